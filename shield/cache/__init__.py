"""The shared Redis result cache (see `shield.cache.result_cache`)."""

from llm_shield.cache.result_cache import CacheStats, ResultCache

__all__ = ["CacheStats", "ResultCache"]
