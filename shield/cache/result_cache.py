"""The shared result cache: bounded, TTL'd, LRU-evicted, kept in Redis and shared by every process.

Keys are raw 32-byte sha256 digests (`shield.contract.ml_cache_key`); values are the caller's compact bytes.

Layout. Every key shares the hash tag ``{cache}``, so on Redis Cluster the whole cache lives in one slot,
on one shard::

    shield:{cache}:v<CACHE_SCHEMA_VERSION>:values   hash   digest -> value bytes
    shield:{cache}:v<CACHE_SCHEMA_VERSION>:lru      zset   digest, scored by last access (server TIME, µs)
    shield:{cache}:v<CACHE_SCHEMA_VERSION>:exp      zset   digest, scored by expiry (insertion + TTL, µs)
    shield:{cache}:v<CACHE_SCHEMA_VERSION>:stats    hash   hits, misses, inserts, updates, evictions, expired,
                                                           corrupt

Hash fields and index members are the raw digests (not hex). The values live in one hash rather than one
key per entry because eviction chooses its victims inside the script, and a script may only touch keys
passed in KEYS (Redis' rule, enforced on Cluster): the caller cannot name the victims in advance, but it can
name these four keys.

Two Lua scripts do all the work, atomically (`lookup.lua`, `insert.lua`, beside this module; loaded with
`register_script`, so a NOSCRIPT after a restart or failover reloads them):

- lookup: one HMGET and one ZMSCORE for the batch; an entry is live while its expiry > server TIME; hits get
  their LRU score refreshed; an expired member, or one whose value is gone, is removed on the spot.
- insert: purges at most n + `PURGE_EXTRA` expired members (oldest expiry first), writes the batch, then evicts
  the least recently used members while the count is over the bound, at most n + `EVICT_EXTRA` of them
  (n = batch size). If the count was <= the bound before the call, n evictions always suffice.

Slack: zero. Nothing else runs while a script runs, so no reader (in any process, on any machine) ever sees
more than `max_entries` entries. The count can only be above the bound if the bound itself was lowered
(an instance started with a smaller `max_entries`); each insert then shrinks the cache by up to
`EVICT_EXTRA` more entries until it fits.

TTL: an expired entry is never returned. Its memory is reclaimed by the purges on writes, by lookups that
meet it, and at the latest when the cache's keys expire: each insert sets them to expire 1 ms after the
last entry does, so an abandoned cache (an old schema version) removes itself.

Batches above `SCRIPT_BATCH` entries are split into several script calls sent in one pipeline: still one
round trip, and no single script blocks Redis for long. A dead Redis never raises from `get_many` or
`set_many`: they miss or do nothing, count the failure and log a warning at most every 30 s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from pydantic import BaseModel, Field
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from llm_shield.config import CacheSettings
from llm_shield.contract import CACHE_SCHEMA_VERSION, KEY_PREFIX
from llm_shield.errors import ConfigError, TransientError

log = logging.getLogger("shield.cache")

#: Root of every cache key; the ``{cache}`` hash tag puts them all in one Cluster slot.
NAMESPACE = f"{KEY_PREFIX}:{{cache}}"
#: Length of a cache key: a raw sha256 digest.
DIGEST_BYTES = 32
#: Most entries handled by one script call; larger batches are pipelined in chunks of this size.
SCRIPT_BATCH = 512
#: Expired members an insert may purge beyond its own batch size.
PURGE_EXTRA = 128
#: Members an insert may evict beyond its own batch size (only needed after the bound was lowered).
EVICT_EXTRA = 16
#: Seconds between two "Redis unavailable" warnings of one instance.
WARN_INTERVAL_S = 30.0
#: Up to this many entries `stats()` measures memory exactly (MEMORY USAGE ... SAMPLES 0); above, it samples.
EXACT_MEMORY_MAX_ENTRIES = 1_000
#: Elements MEMORY USAGE samples per key above `EXACT_MEMORY_MAX_ENTRIES`.
MEMORY_SAMPLES = 64
#: Socket (connect and read) timeout of `ResultCache.from_url`, in seconds.
DEFAULT_SOCKET_TIMEOUT_S = 2.0
#: Errors that mean "Redis is unreachable" (timeouts included); every other error raises.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)

_HERE = Path(__file__).resolve().parent
_LOOKUP_LUA = (_HERE / "lookup.lua").read_text()
_INSERT_LUA = (_HERE / "insert.lua").read_text()
_COUNTERS = ("hits", "misses", "inserts", "updates", "evictions", "expired", "corrupt")


class CacheStats(BaseModel):
    """Shared counters of the cache (every instance's calls) and its current size.

    The counters live in the cache's stats hash, which expires and is cleared with the cache, so
    ``entries == inserts - evictions - expired`` holds (``expired`` also counts entries whose value vanished).
    """

    hits: int = 0
    misses: int = 0
    inserts: int = Field(default=0, description="New entries written")
    updates: int = Field(default=0, description="Writes that overwrote a live entry")
    evictions: int = 0
    expired: int = Field(default=0, description="Expired entries purged (on write) or dropped (on read)")
    corrupt: int = Field(default=0, description="Unreadable entries met by a lookup, treated as misses and removed")
    entries: int = Field(default=0, description="ZCARD of the LRU index")
    memory_bytes: int | None = Field(
        default=None,
        description="MEMORY USAGE summed over the cache's keys: exact (SAMPLES 0) up to 1,000 entries, "
        "sampled (64 elements per key) above; None where the server has no MEMORY command",
    )
    memory_exact: bool = False
    hit_rate: float = Field(default=0.0, description="hits / (hits + misses)")
    max_entries: int
    ttl_seconds: int


class ResultCache:
    """A bounded, shared Redis cache of raw-digest keys to byte values.

    Args:
        client: a Redis client with ``decode_responses=False``. Its timeouts and retries are used as they are;
            `from_url` makes one with a short timeout.
        settings: the bound, the TTL and the on/off switch.
        namespace: root of the keys; it must contain a ``{hash tag}``. Only tests and benchmarks change it.
    """

    def __init__(self, client: redis.Redis, settings: CacheSettings, *, namespace: str = NAMESPACE) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ConfigError("the result cache needs a Redis client with decode_responses=False")
        if "{" not in namespace or "}" not in namespace.split("{", 1)[1]:
            raise ConfigError(f"cache namespace {namespace!r} has no {{hash tag}}")
        self.settings = settings
        self.namespace = namespace
        self.prefix = f"{namespace}:v{CACHE_SCHEMA_VERSION}:"
        self.lru_key = f"{self.prefix}lru"
        self.exp_key = f"{self.prefix}exp"
        self.values_key = f"{self.prefix}values"
        self.stats_key = f"{self.prefix}stats"
        self.available = True
        self.unavailable_errors = 0
        self._client = client
        self._keys = [self.lru_key, self.exp_key, self.values_key, self.stats_key]
        self._lookup = client.register_script(_LOOKUP_LUA)
        self._insert = client.register_script(_INSERT_LUA)
        self._last_warning = float("-inf")

    @classmethod
    def from_url(
        cls, url: str, settings: CacheSettings, socket_timeout: float = DEFAULT_SOCKET_TIMEOUT_S
    ) -> "ResultCache":
        """A cache on its own client (redis://, rediss:// or unix://), failing fast when Redis is down.

        A dropped connection is retried once at once (a restarted server); a timeout is not retried.
        """
        client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            decode_responses=False,
        )
        return cls(client, settings)

    @property
    def enabled(self) -> bool:
        """False when the settings turn the cache off: every call is then a no-op that never touches Redis."""
        return self.settings.enabled and self.settings.max_entries > 0

    def get_many(self, keys: Sequence[bytes], count: bool = True) -> list[bytes | None]:
        """The values of `keys` in order, None for each miss, in one round trip. Never raises for a dead Redis.

        `count=False` leaves the hit/miss counters alone: for a worker looking up again texts that the producer
        already looked up (and counted), so that `cache stats` counts each text's lookup once."""
        if not keys or not self.enabled:
            return [None] * len(keys)
        _check_digests(keys)
        flag = b"1" if count else b"0"
        argvs = [[flag, *keys[i : i + SCRIPT_BATCH]] for i in range(0, len(keys), SCRIPT_BATCH)]
        try:
            replies = self._call(self._lookup, argvs)
        except UNAVAILABLE_ERRORS as exc:
            self._unavailable(exc)
            return [None] * len(keys)
        self.available = True
        return [value for reply in replies for value in reply]

    def set_many(self, items: Sequence[tuple[bytes, bytes]]) -> int:
        """Insert or overwrite `items` (digest, value) in one round trip; returns how many entries this
        evicted. Never raises for a dead Redis (then 0)."""
        if not items or not self.enabled:
            return 0
        _check_digests([key for key, _ in items])
        head = [
            self.settings.ttl_seconds * 1_000_000,
            self.settings.max_entries,
            min(len(items), SCRIPT_BATCH) + PURGE_EXTRA,
            EVICT_EXTRA,
        ]
        argvs = [head + _flatten(items[i : i + SCRIPT_BATCH]) for i in range(0, len(items), SCRIPT_BATCH)]
        try:
            replies = self._call(self._insert, argvs)
        except UNAVAILABLE_ERRORS as exc:
            self._unavailable(exc)
            return 0
        self.available = True
        return sum(int(reply[1]) for reply in replies)

    def delete_many(self, keys: Sequence[bytes]) -> int:
        """Remove entries (ones that could not be read); counted as `corrupt`. Never raises for a dead Redis."""
        if not keys or not self.enabled:
            return 0
        _check_digests(keys)
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.hdel(self.values_key, *keys)
            pipe.zrem(self.lru_key, *keys)
            pipe.zrem(self.exp_key, *keys)
            pipe.hincrby(self.stats_key, "corrupt", len(keys))
            removed = pipe.execute()[0]
        except UNAVAILABLE_ERRORS as exc:
            self._unavailable(exc)
            return 0
        return int(removed)

    def stats(self) -> CacheStats:
        """Shared counters, entry count and memory (exact up to 1,000 entries, sampled above).

        Raises:
            TransientError: Redis is unreachable.
        """
        base = {"max_entries": self.settings.max_entries, "ttl_seconds": self.settings.ttl_seconds}
        if not self.enabled:
            return CacheStats(**base)
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.hgetall(self.stats_key)
            pipe.zcard(self.lru_key)
            raw, entries = pipe.execute()
            memory, exact = self._memory(entries)
        except UNAVAILABLE_ERRORS as exc:
            self._unavailable(exc)
            raise TransientError(f"the result cache's Redis is unreachable: {exc}") from exc
        self.available = True
        counters = {name: int(raw.get(name.encode(), 0)) for name in _COUNTERS}
        looked_up = counters["hits"] + counters["misses"]
        return CacheStats(
            **counters, **base, entries=entries, memory_bytes=memory, memory_exact=exact,
            hit_rate=counters["hits"] / looked_up if looked_up else 0.0,
        )

    def clear(self) -> int:
        """Remove the cache's own keys (every schema version; SCAN + UNLINK, never FLUSHDB); returns how many.

        Raises:
            TransientError: Redis is unreachable.
        """
        if not self.enabled:
            return 0
        removed, batch = 0, []
        try:
            for key in self._client.scan_iter(match=_glob_escape(self.namespace) + ":*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    removed += self._client.unlink(*batch)
                    batch = []
            if batch:
                removed += self._client.unlink(*batch)
        except UNAVAILABLE_ERRORS as exc:
            self._unavailable(exc)
            raise TransientError(f"the result cache's Redis is unreachable: {exc}") from exc
        self.available = True
        return removed

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    def _call(self, script: Script, argvs: list[list[Any]]) -> list[Any]:
        """Run `script` once per argument list, in one round trip; reload it on NOSCRIPT."""
        if len(argvs) == 1:
            return [script(keys=self._keys, args=argvs[0], client=self._client)]
        replies = self._pipeline(script, argvs)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, redis.exceptions.NoScriptError)]
        if missing:
            script.sha = self._client.script_load(script.script)
            for i, reply in zip(missing, self._pipeline(script, [argvs[i] for i in missing])):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _pipeline(self, script: Script, argvs: list[list[Any]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for argv in argvs:
            pipe.evalsha(script.sha, len(self._keys), *self._keys, *argv)
        return pipe.execute(raise_on_error=False)

    def _memory(self, entries: int) -> tuple[int | None, bool]:
        """MEMORY USAGE summed over the cache's keys, and whether it is exact; (None, False) if unsupported."""
        exact = entries <= EXACT_MEMORY_MAX_ENTRIES
        pipe = self._client.pipeline(transaction=False)
        for key in self._keys:
            pipe.memory_usage(key, samples=0 if exact else MEMORY_SAMPLES)
        try:
            sizes = pipe.execute()
        except redis.ResponseError:  # a server without MEMORY (some managed services, fakeredis)
            return None, False
        return sum(size or 0 for size in sizes), exact

    def _unavailable(self, exc: Exception) -> None:
        self.available = False
        self.unavailable_errors += 1
        now = time.monotonic()
        if now - self._last_warning >= WARN_INTERVAL_S:
            self._last_warning = now
            log.warning("result cache unavailable, carrying on without it (%d failures so far): %s",
                        self.unavailable_errors, exc)


def _check_digests(keys: Sequence[bytes]) -> None:
    for key in keys:
        if not isinstance(key, bytes) or len(key) != DIGEST_BYTES:
            raise ValueError(f"cache keys are raw {DIGEST_BYTES}-byte digests, got {key!r:.80}")


def _flatten(items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
    flat: list[bytes] = []
    for key, value in items:
        if not isinstance(value, bytes):
            raise TypeError(f"cache values are bytes, got {type(value).__name__}")
        flat += (key, value)
    return flat


def _glob_escape(text: str) -> str:
    """`text` with Redis glob characters escaped, for SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
