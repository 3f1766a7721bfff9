"""The shared result cache: bounded, TTL'd, LRU-evicted, kept in Redis and shared by every process.

Keys are raw 32-byte sha256 digests (`shield.contract.ml_cache_key`); values are the caller's compact bytes.

Layout. The cache is split into ``partitions`` (a setting, 1 by default); a digest belongs to partition
``int(digest[:4]) % partitions``. Each partition has its own four keys under its own hash tag, so Redis
Cluster places each partition's keys in one slot and spreads the partitions over its shards::

    shield:{cache}:v<CACHE_SCHEMA_VERSION>:values        (one partition: the layout before partitions existed)
    shield:{cache:<i>/<n>}:v<CACHE_SCHEMA_VERSION>:values (partition i of n)

    ...:values   hash   digest -> value bytes
    ...:lru      zset   digest, scored by last access (server TIME, µs)
    ...:exp      zset   digest, scored by expiry (insertion + TTL, µs)
    ...:stats    hash   hits, misses, inserts, updates, evictions, expired, corrupt

Hash fields and index members are the raw digests (not hex). The values live in one hash per partition
rather than one key per entry because eviction chooses its victims inside the script, and a script may only
touch keys passed in KEYS (Redis' rule, enforced on Cluster): the caller cannot name the victims in
advance, but it can name a partition's four keys. The bound is split over the partitions (partition i holds
at most ``max_entries // n`` entries, plus one for the first ``max_entries % n``), so the sum never exceeds
``max_entries``; eviction is least-recently-used within a partition (digests spread evenly over them, so it
approximates a global LRU). The partition count is part of the key names: processes configured with
different counts use separate caches, each within the bound; `clear` removes every layout.

Redis Cluster (``redis+cluster://`` / ``rediss+cluster://`` URLs): a batch's script calls are grouped by the
master that owns each partition's slot and sent as one pipeline per master (redis-py's cluster pipeline
refuses EVALSHA, so each master's own connection pipelines them); a MOVED or ASK reply (a resharded slot)
refreshes the slot map and retries once.

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

A batch is split into one script call per partition it touches (and per `SCRIPT_BATCH` entries), all sent
in one pipeline: still one round trip per Redis server, and no single script blocks Redis for long. A dead Redis never raises from `get_many` or
`set_many`: they miss or do nothing, count the failure and log a warning at most every 30 s.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from pydantic import BaseModel, Field
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import AskError, ClusterDownError, MovedError, NoScriptError, RedisClusterException
from redis.retry import Retry

from llm_shield.config import CacheSettings
from llm_shield.contract import CACHE_SCHEMA_VERSION, KEY_PREFIX
from llm_shield.errors import ConfigError, TransientError

log = logging.getLogger("shield.cache")

#: Root of every cache key; each partition adds its number to the ``{cache}`` hash tag (one Cluster slot each).
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
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, ClusterDownError,
                                                    RedisClusterException)
#: URL schemes that select Redis Cluster, and the plain scheme redis-py is given for each.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

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


@dataclass(frozen=True)
class Partition:
    """One partition's four keys (one hash tag: one Cluster slot) and its share of the bound."""

    index: int
    lru: str
    exp: str
    values: str
    stats: str
    max_entries: int

    @property
    def keys(self) -> list[str]:
        return [self.lru, self.exp, self.values, self.stats]


class ResultCache:
    """A bounded, shared Redis cache of raw-digest keys to byte values.

    Args:
        client: a Redis (or RedisCluster) client with ``decode_responses=False``. Its timeouts and retries are
            used as they are; `from_url` makes one with a short timeout.
        settings: the bound, the TTL, the partition count and the on/off switch.
        namespace: root of the keys; it must contain a ``{hash tag}``. Only tests and benchmarks change it.
    """

    def __init__(self, client: redis.Redis | RedisCluster | Callable[[], RedisCluster], settings: CacheSettings, *,
                 namespace: str = NAMESPACE) -> None:
        # a callable: a RedisCluster made on first use (its constructor connects, and a cache whose Redis is down
        # must not stop a worker from starting: it runs without the cache)
        self._factory = None if isinstance(client, (redis.Redis, RedisCluster)) else client
        if self._factory is None and _connection_kwargs(client).get("decode_responses"):
            raise ConfigError("the result cache needs a Redis client with decode_responses=False")
        if "{" not in namespace or "}" not in namespace.split("{", 1)[1]:
            raise ConfigError(f"cache namespace {namespace!r} has no {{hash tag}}")
        self.settings = settings
        self.namespace = namespace
        self.partitions = [self._partition(i) for i in range(settings.partitions)]
        first = self.partitions[0]
        self.prefix = f"{self._tagged(0)}:v{CACHE_SCHEMA_VERSION}:"
        self.lru_key, self.exp_key, self.values_key, self.stats_key = first.keys
        self.available = True
        self.unavailable_errors = 0
        self._client = None if self._factory else client
        self._cluster = self._factory is not None or isinstance(client, RedisCluster)
        self._last_warning = float("-inf")

    @property
    def _redis(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def _tagged(self, i: int) -> str:
        """The namespace with partition i's hash tag (unchanged when there is one partition)."""
        n = self.settings.partitions
        if n == 1:
            return self.namespace
        head, rest = self.namespace.split("{", 1)
        tag, tail = rest.split("}", 1)
        return f"{head}{{{tag}:{i}/{n}}}{tail}"

    def _partition(self, i: int) -> Partition:
        n, bound = self.settings.partitions, self.settings.max_entries
        prefix = f"{self._tagged(i)}:v{CACHE_SCHEMA_VERSION}:"
        return Partition(i, prefix + "lru", prefix + "exp", prefix + "values", prefix + "stats",
                         bound // n + (1 if i < bound % n else 0))

    def partition_of(self, digest: bytes) -> int:
        """The partition a digest belongs to."""
        return int.from_bytes(digest[:4], "big") % len(self.partitions)

    @classmethod
    def from_url(
        cls, url: str, settings: CacheSettings, socket_timeout: float = DEFAULT_SOCKET_TIMEOUT_S
    ) -> "ResultCache":
        """A cache on its own client, failing fast when Redis is down: redis://, rediss:// or unix:// for one
        server, redis+cluster:// or rediss+cluster:// (any reachable node) for Redis Cluster.

        A dropped connection is retried once at once (a restarted server); a timeout is not retried.
        """
        common: dict[str, Any] = dict(socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, decode_responses=False)
        scheme, _, rest = url.partition("://")
        if scheme in CLUSTER_SCHEMES:
            plain = f"{CLUSTER_SCHEMES[scheme]}://{rest}"
            return cls(lambda: RedisCluster.from_url(plain, **common), settings)
        return cls(redis.Redis.from_url(
            url, retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)), **common), settings)

    @property
    def enabled(self) -> bool:
        """False when the settings turn the cache off: every call is then a no-op that never touches Redis."""
        return self.settings.enabled and self.settings.max_entries > 0

    def get_many(self, keys: Sequence[bytes], count: bool = True) -> list[bytes | None]:
        """The values of `keys` in order, None for each miss, in one round trip per Redis server. Never raises
        for a dead Redis.

        `count=False` leaves the hit/miss counters alone: for a worker looking up again texts that the producer
        already looked up (and counted), so that `cache stats` counts each text's lookup once."""
        if not keys or not self.enabled:
            return [None] * len(keys)
        _check_digests(keys)
        flag = b"1" if count else b"0"
        groups = self._by_partition(range(len(keys)), keys)
        calls = [(part, [flag, *(keys[j] for j in chunk)]) for part, chunk in groups]
        try:
            replies = self._run(_LOOKUP, calls)
        except UNAVAILABLE_ERRORS as exc:
            self._unavailable(exc)
            return [None] * len(keys)
        self.available = True
        out: list[bytes | None] = [None] * len(keys)
        for (_, chunk), reply in zip(groups, replies):
            for j, value in zip(chunk, reply):
                out[j] = value
        return out

    def set_many(self, items: Sequence[tuple[bytes, bytes]]) -> int:
        """Insert or overwrite `items` (digest, value) in one round trip per Redis server; returns how many
        entries this evicted. Never raises for a dead Redis (then 0)."""
        if not items or not self.enabled:
            return 0
        keys = [key for key, _ in items]
        _check_digests(keys)
        calls = []
        for part, chunk in self._by_partition(range(len(items)), keys):
            head = [self.settings.ttl_seconds * 1_000_000, self.partitions[part].max_entries,
                    len(chunk) + PURGE_EXTRA, EVICT_EXTRA]
            calls.append((part, head + _flatten([items[j] for j in chunk])))
        try:
            replies = self._run(_INSERT, calls)
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
        by_part: dict[int, list[bytes]] = {}
        for key in keys:
            by_part.setdefault(self.partition_of(key), []).append(key)
        removed = 0
        try:
            for client, parts in self._routes(by_part):
                pipe = client.pipeline(transaction=False)
                for i in parts:
                    part, group = self.partitions[i], by_part[i]
                    pipe.hdel(part.values, *group)
                    pipe.zrem(part.lru, *group)
                    pipe.zrem(part.exp, *group)
                    pipe.hincrby(part.stats, "corrupt", len(group))
                removed += sum(int(r) for r in pipe.execute()[::4])
        except UNAVAILABLE_ERRORS as exc:
            self._unavailable(exc)
            return 0
        return removed

    def stats(self) -> CacheStats:
        """Shared counters and entry count summed over the partitions, and memory (exact up to 1,000 entries,
        sampled above).

        Raises:
            TransientError: Redis is unreachable.
        """
        base = {"max_entries": self.settings.max_entries, "ttl_seconds": self.settings.ttl_seconds}
        if not self.enabled:
            return CacheStats(**base)
        counters = dict.fromkeys(_COUNTERS, 0)
        entries = 0
        try:
            for client, parts in self._routes(range(len(self.partitions))):
                pipe = client.pipeline(transaction=False)
                for i in parts:
                    pipe.hgetall(self.partitions[i].stats)
                    pipe.zcard(self.partitions[i].lru)
                replies = pipe.execute()
                for raw, count in zip(replies[::2], replies[1::2]):
                    entries += count
                    for name in _COUNTERS:
                        counters[name] += int(raw.get(name.encode(), 0))
            memory, exact = self._memory(entries)
        except UNAVAILABLE_ERRORS as exc:
            self._unavailable(exc)
            raise TransientError(f"the result cache's Redis is unreachable: {exc}") from exc
        self.available = True
        looked_up = counters["hits"] + counters["misses"]
        return CacheStats(
            **counters, **base, entries=entries, memory_bytes=memory, memory_exact=exact,
            hit_rate=counters["hits"] / looked_up if looked_up else 0.0,
        )

    def entries_by_server(self) -> dict[str, int]:
        """Entries held by each Redis server ("host:port"; one entry for a single server).

        Raises:
            TransientError: Redis is unreachable.
        """
        out: dict[str, int] = {}
        try:
            for client, parts in self._routes(range(len(self.partitions))):
                pipe = client.pipeline(transaction=False)
                for i in parts:
                    pipe.zcard(self.partitions[i].lru)
                kwargs = _connection_kwargs(client)
                name = f"{kwargs.get('host', kwargs.get('path', 'redis'))}:{kwargs.get('port', '')}".rstrip(":")
                out[name] = out.get(name, 0) + sum(pipe.execute())
        except UNAVAILABLE_ERRORS as exc:
            raise TransientError(f"the result cache's Redis is unreachable: {exc}") from exc
        return out

    def clear(self) -> int:
        """Remove the cache's own keys (every schema version and partition layout; SCAN + UNLINK, never
        FLUSHDB); returns how many.

        Raises:
            TransientError: Redis is unreachable.
        """
        if not self.enabled:
            return 0
        head, rest = self.namespace.split("{", 1)
        pattern = _glob_escape(head) + "{" + _glob_escape(rest.split("}", 1)[0]) + "[}:]*"
        removed = 0
        try:
            for client in self._servers():
                batch: list[bytes] = []
                for key in client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        removed += self._unlink(client, batch)
                        batch = []
                if batch:
                    removed += self._unlink(client, batch)
        except UNAVAILABLE_ERRORS as exc:
            self._unavailable(exc)
            raise TransientError(f"the result cache's Redis is unreachable: {exc}") from exc
        self.available = True
        return removed

    def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            self._client.close()

    # -- routing ---------------------------------------------------------------------------------------------
    def _by_partition(self, indexes: Iterable[int], keys: Sequence[bytes]) -> list[tuple[int, list[int]]]:
        """(partition, positions) groups of at most SCRIPT_BATCH keys, partitions in order."""
        by_part: dict[int, list[int]] = {}
        if len(self.partitions) == 1:
            by_part[0] = list(indexes)
        else:
            for j in indexes:
                by_part.setdefault(self.partition_of(keys[j]), []).append(j)
        return [(part, group[k : k + SCRIPT_BATCH]) for part, group in sorted(by_part.items())
                for k in range(0, len(group), SCRIPT_BATCH)]

    def _routes(self, parts: Iterable[int]) -> list[tuple[redis.Redis, list[int]]]:
        """(connection of the server that holds them, partitions), one per server."""
        parts = sorted(parts)
        if not self._cluster:
            return [(self._redis, parts)]
        cluster = self._redis
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i in parts:
            node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(self.partitions[i].lru))
            by_node.setdefault(node.name, (node, []))[1].append(i)
        return [(cluster.get_redis_connection(node), group) for node, group in by_node.values()]

    def _servers(self) -> list[redis.Redis]:
        if not self._cluster:
            return [self._redis]
        return [self._redis.get_redis_connection(node) for node in self._redis.get_primaries()]

    def _unlink(self, client: redis.Redis, keys: list[bytes]) -> int:
        if not self._cluster:
            return int(client.unlink(*keys))
        pipe = client.pipeline(transaction=False)  # on Cluster, keys of different slots: one command each
        for key in keys:
            pipe.unlink(key)
        return sum(pipe.execute())

    def _run(self, script: "_Script", calls: list[tuple[int, list[Any]]]) -> list[Any]:
        """Run `script` once per (partition, argv), one pipeline per server; reload it on NOSCRIPT; on Cluster,
        refresh the slot map and retry once on MOVED/ASK."""
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            by_part: dict[int, list[int]] = {}
            for n in todo:
                by_part.setdefault(calls[n][0], []).append(n)
            for client, parts in self._routes(by_part):
                order = [n for i in parts for n in by_part[i]]
                out = self._pipeline(client, script, [calls[n] for n in order])
                missing = [k for k, reply in enumerate(out) if isinstance(reply, NoScriptError)]
                if missing:
                    client.script_load(script.source)
                    for k, reply in zip(missing, self._pipeline(client, script, [calls[order[k]] for k in missing])):
                        out[k] = reply
                for n, reply in zip(order, out):
                    replies[n] = reply
            todo = [n for n in todo if isinstance(replies[n], (MovedError, AskError))]
            if not todo or not self._cluster or attempt:
                break
            self._redis.nodes_manager.initialize()
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _pipeline(self, client: redis.Redis, script: "_Script", calls: list[tuple[int, list[Any]]]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for part, argv in calls:
            pipe.evalsha(script.sha, 4, *self.partitions[part].keys, *argv)
        return pipe.execute(raise_on_error=False)

    def _memory(self, entries: int) -> tuple[int | None, bool]:
        """MEMORY USAGE summed over the cache's keys, and whether it is exact; (None, False) if unsupported."""
        exact = entries <= EXACT_MEMORY_MAX_ENTRIES
        total = 0
        for client, parts in self._routes(range(len(self.partitions))):
            pipe = client.pipeline(transaction=False)
            for i in parts:
                for key in self.partitions[i].keys:
                    pipe.memory_usage(key, samples=0 if exact else MEMORY_SAMPLES)
            try:
                sizes = pipe.execute()
            except redis.ResponseError:  # a server without MEMORY (some managed services, fakeredis)
                return None, False
            total += sum(size or 0 for size in sizes)
        return total, exact

    def _unavailable(self, exc: Exception) -> None:
        self.available = False
        self.unavailable_errors += 1
        now = time.monotonic()
        if now - self._last_warning >= WARN_INTERVAL_S:
            self._last_warning = now
            log.warning("result cache unavailable, carrying on without it (%d failures so far): %s",
                        self.unavailable_errors, exc)


@dataclass(frozen=True)
class _Script:
    source: str
    sha: str


_LOOKUP = _Script(_LOOKUP_LUA, hashlib.sha1(_LOOKUP_LUA.encode()).hexdigest())
_INSERT = _Script(_INSERT_LUA, hashlib.sha1(_INSERT_LUA.encode()).hexdigest())


def _connection_kwargs(client: Any) -> dict[str, Any]:
    if isinstance(client, RedisCluster):
        return client.get_default_node().redis_connection.get_connection_kwargs()
    return client.get_connection_kwargs()


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
