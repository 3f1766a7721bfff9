"""Configuration types shared by producer and workers: variants, hybrid modes, ML and cache presets."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class Variant(str, Enum):
    """Model precision variant; each has its own worker queue."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class HybridMode(str, Enum):
    """How heuristics and ML models share a decision."""

    heuristic_only = "heuristic_only"
    ml_only = "ml_only"
    hybrid = "hybrid"  # a confident heuristic decides at once; the model decides the rest
    both = "both"  # both run; the result combines them


class DetectionMethod(str, Enum):
    """Which path decided a scanner's verdict."""

    heuristic = "heuristic"
    ml = "ml"
    heuristic_short_circuit = "heuristic_short_circuit"
    ml_fallback_to_heuristic = "ml_fallback_to_heuristic"
    hybrid_both = "hybrid_both"


class MLConfig(BaseModel):
    """How the ML side of a scan behaves."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    variant: Variant = Variant.int8
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="None: the catalog's threshold")
    fallback_to_heuristic: bool = True
    hybrid_mode: HybridMode = HybridMode.hybrid

    @classmethod
    def preset(cls, name: str) -> "MLConfig":
        """A named preset: production, edge, high_accuracy or disabled."""
        try:
            return ML_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown ML preset {name!r}; choose one of {sorted(ML_PRESETS)}") from None


ML_PRESETS: dict[str, MLConfig] = {
    "production": MLConfig(variant=Variant.int8, hybrid_mode=HybridMode.hybrid),
    "edge": MLConfig(variant=Variant.int8, hybrid_mode=HybridMode.hybrid, threshold=0.6),
    "high_accuracy": MLConfig(variant=Variant.fp32, hybrid_mode=HybridMode.both, fallback_to_heuristic=False),
    "disabled": MLConfig(enabled=False, hybrid_mode=HybridMode.heuristic_only),
}


class CacheSettings(BaseModel):
    """Bounds of the shared result cache."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    max_entries: int = Field(default=1_000_000, ge=0)
    ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    partitions: int = Field(default=1, ge=1, le=4096, description="Hash-tagged partitions (Redis Cluster spreads "
                            "them over its shards); the bound is split over them")

    @classmethod
    def preset(cls, name: str) -> "CacheSettings":
        """A named preset: production, edge, aggressive, minimal or disabled."""
        try:
            return CACHE_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown cache preset {name!r}; choose one of {sorted(CACHE_PRESETS)}") from None


CACHE_PRESETS: dict[str, CacheSettings] = {
    "production": CacheSettings(max_entries=1_000_000, ttl_seconds=7 * 24 * 3600),
    "edge": CacheSettings(max_entries=50_000, ttl_seconds=24 * 3600),
    "aggressive": CacheSettings(max_entries=10_000_000, ttl_seconds=30 * 24 * 3600),
    "minimal": CacheSettings(max_entries=10_000, ttl_seconds=3600),
    "disabled": CacheSettings(enabled=False, max_entries=0, ttl_seconds=1),
}


class InferenceMetrics(BaseModel):
    """Counters of one process's inference engine."""

    calls: int = 0
    texts: int = 0
    cache_hits: int = 0
    errors: int = 0
    total_inference_ms: float = 0.0

    @property
    def hit_rate(self) -> float:
        looked_up = self.texts
        return self.cache_hits / looked_up if looked_up else 0.0

    @property
    def mean_inference_ms(self) -> float:
        return self.total_inference_ms / self.calls if self.calls else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0
