"""The shared result cache on a real redis-server: TTL, LRU, round trips, NOSCRIPT, many processes at once."""

from __future__ import annotations

import hashlib
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from llm_shield.cache import ResultCache
from llm_shield.config import CacheSettings
from llm_shield.local_redis import LocalRedis

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration

VALUE = b'{"label":"INJECTION","score":0.9731,"windows":1,"truncated":false}'


def digest(name: object) -> bytes:
    return hashlib.sha256(str(name).encode()).digest()


def make(url: str, max_entries: int = 1000, ttl: int = 3600) -> ResultCache:
    return ResultCache.from_url(url, CacheSettings(max_entries=max_entries, ttl_seconds=ttl))


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url)
    yield r
    r.close()


def members(client: redis.Redis, key: str) -> set[bytes]:
    return set(client.zrange(key, 0, -1))


def test_round_trip_stats_and_exact_memory(redis_url: str) -> None:
    cache = make(redis_url)
    keys = [digest(i) for i in range(100)]
    cache.set_many([(key, VALUE) for key in keys[:50]])
    assert cache.get_many(keys) == [VALUE] * 50 + [None] * 50
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.inserts, stats.entries, stats.evictions) == (50, 50, 50, 50, 0)
    assert stats.hit_rate == 0.5
    assert stats.memory_exact and stats.memory_bytes is not None
    assert stats.memory_bytes > 50 * len(VALUE)
    # readable by any instance
    assert make(redis_url).stats().model_dump() == stats.model_dump()


class CountingConnection(redis.UnixDomainSocketConnection):
    """Counts the writes to the socket: a pipeline is one write, so one write is one round trip."""

    sends = 0

    def send_packed_command(self, command: object, check_health: bool = True) -> None:
        type(self).sends += 1
        super().send_packed_command(command, check_health)


@pytest.mark.parametrize("batch", [64, 1300])
def test_each_batch_is_one_round_trip(redis_server: LocalRedis, redis_url: str, batch: int) -> None:
    pool = redis.ConnectionPool(connection_class=CountingConnection, path=str(redis_server.socket_path))
    cache = ResultCache(redis.Redis(connection_pool=pool), CacheSettings(max_entries=10_000))
    cache._client.ping()
    keys = [digest(i) for i in range(batch)]
    CountingConnection.sends = 0
    cache.set_many([(key, VALUE) for key in keys])
    assert CountingConnection.sends == 1
    assert cache.get_many(keys) == [VALUE] * batch
    assert CountingConnection.sends == 2
    cache.get_many([])
    cache.set_many([])
    assert CountingConnection.sends == 2


def test_least_recently_read_entry_is_evicted_first(redis_url: str) -> None:
    cache = make(redis_url, max_entries=3)
    a, b, c, d = (digest(x) for x in "abcd")
    for key in (a, b, c):
        cache.set_many([(key, VALUE)])
    cache.get_many([a])
    cache.set_many([(d, VALUE)])
    assert cache.get_many([a, b, c, d]) == [VALUE, None, VALUE, VALUE]
    assert cache.stats().evictions == 1


def test_expired_entries_leave_nothing_behind(redis_url: str, client: redis.Redis) -> None:
    short, long = make(redis_url, ttl=1), make(redis_url, ttl=3600)
    doomed = [digest(f"short{i}") for i in range(10)]
    kept = [digest(f"long{i}") for i in range(3)]
    short.set_many([(key, VALUE) for key in doomed])
    long.set_many([(key, VALUE) for key in kept])
    assert long.get_many(doomed) == [VALUE] * 10
    time.sleep(2.2)
    assert long.get_many(doomed[:4]) == [None] * 4  # removed lazily, on read
    assert client.zcard(long.lru_key) == client.zcard(long.exp_key) == client.hlen(long.values_key) == 9
    fresh = digest("fresh")
    long.set_many([(fresh, VALUE)])  # purges the other 6 on write
    live = set(kept) | {fresh}
    assert client.zcard(long.lru_key) == client.zcard(long.exp_key) == client.hlen(long.values_key) == 4
    assert members(client, long.lru_key) == members(client, long.exp_key) == set(client.hkeys(long.values_key)) == live
    assert long.get_many(doomed + kept) == [None] * 10 + [VALUE] * 3
    assert long.stats().expired == 10


def test_a_fully_expired_cache_removes_its_keys(redis_url: str, client: redis.Redis) -> None:
    cache = make(redis_url, ttl=1)
    cache.set_many([(digest(i), VALUE) for i in range(20)])
    time.sleep(2.2)
    assert cache.get_many([digest(0)]) == [None]
    assert client.exists(cache.lru_key, cache.exp_key, cache.values_key) == 0


def test_noscript_after_script_flush(redis_url: str, client: redis.Redis) -> None:
    cache = make(redis_url, max_entries=5000)
    keys = [digest(i) for i in range(1200)]  # more than one script call per batch, too
    cache.set_many([(key, VALUE) for key in keys[:10]])
    client.script_flush()
    assert cache.get_many(keys[:10]) == [VALUE] * 10
    client.script_flush()
    cache.set_many([(key, VALUE) for key in keys])
    client.script_flush()
    assert cache.get_many(keys) == [VALUE] * 1200


def test_clear_keeps_foreign_keys(redis_url: str, client: redis.Redis) -> None:
    cache = make(redis_url)
    cache.set_many([(digest(i), VALUE) for i in range(2000)])
    client.set("shield:job:abc:results", "mine")
    client.lpush("celery", "a task message")
    assert cache.clear() == 4
    assert sorted(client.keys("*")) == [b"celery", b"shield:job:abc:results"]
    assert cache.stats().entries == 0


def test_password_protected_server(tmp_path: Path) -> None:
    with LocalRedis.start(tmp_path / "redis", password="s3cret") as server:
        assert server.url.startswith("unix://:s3cret@")
        cache = ResultCache.from_url(server.url, CacheSettings())
        cache.set_many([(digest("a"), VALUE)])
        assert cache.get_many([digest("a")]) == [VALUE]
        assert cache.available


@pytest.mark.parametrize(
    "url",
    [f"redis://127.0.0.1:{free_port()}/0", "unix:///nonexistent/shield-cache.sock?db=0"],
    ids=["closed-port", "missing-socket"],
)
def test_unreachable_redis_is_a_miss_not_an_error(url: str) -> None:
    cache = make(url)
    assert cache.get_many([digest("a"), digest("b")]) == [None, None]
    cache.set_many([(digest("a"), VALUE)])
    assert not cache.available
    assert cache.unavailable_errors == 2


def test_server_restart_is_survived(tmp_path: Path) -> None:
    with LocalRedis.start(tmp_path / "redis") as server:
        cache = make(server.url)
        cache.set_many([(digest("a"), VALUE)])
        server.kill()
        assert cache.get_many([digest("a")]) == [None]
        assert not cache.available
        server.restart()  # a fresh server: no data, no scripts
        cache.set_many([(digest("b"), VALUE)])
        assert cache.get_many([digest("a"), digest("b")]) == [None, VALUE]
        assert cache.available


# --- many processes against one bound ---------------------------------------------------------------------

BOUND = 1000
WRITERS = 4
PER_WRITER = 5000
BATCH = 64


def _writer(url: str, worker: int) -> None:
    cache = ResultCache.from_url(url, CacheSettings(max_entries=BOUND, ttl_seconds=3600), socket_timeout=30)
    for start in range(0, PER_WRITER, BATCH):
        cache.set_many([(digest(f"{worker}:{i}"), VALUE) for i in range(start, min(start + BATCH, PER_WRITER))])
        cache.get_many([digest(f"{worker}:{start}"), digest(f"{(worker + 1) % WRITERS}:{start}")])
    sys.exit(cache.unavailable_errors)


def test_bound_holds_across_processes(redis_url: str, client: redis.Redis) -> None:
    probe = make(redis_url, max_entries=BOUND)
    seen = {"entries": 0, "expiry": 0, "values": 0, "polls": 0}
    done = threading.Event()

    def monitor() -> None:
        while not done.is_set():
            pipe = client.pipeline(transaction=True)  # one consistent snapshot
            pipe.zcard(probe.lru_key).zcard(probe.exp_key).hlen(probe.values_key)
            for name, count in zip(("entries", "expiry", "values"), pipe.execute()):
                seen[name] = max(seen[name], count)
            seen["polls"] += 1

    watcher = threading.Thread(target=monitor)
    watcher.start()
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(redis_url, w)) for w in range(WRITERS)]
    for process in writers:
        process.start()
    for process in writers:
        process.join()
    done.set()
    watcher.join()

    assert [p.exitcode for p in writers] == [0] * WRITERS
    assert seen["polls"] > 10
    assert seen["entries"] <= BOUND and seen["expiry"] <= BOUND and seen["values"] <= BOUND
    assert seen["entries"] == BOUND  # the cache did fill up
    stats = probe.stats()
    assert stats.inserts == WRITERS * PER_WRITER
    assert stats.entries == client.zcard(probe.exp_key) == client.hlen(probe.values_key) == BOUND
    assert stats.evictions == stats.inserts - stats.entries
    # the cache's four keys and nothing else
    own = (probe.lru_key, probe.exp_key, probe.values_key, probe.stats_key)
    assert sorted(client.keys("*")) == sorted(key.encode() for key in own)


def test_bench_quick_smoke(redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_cache.py"), "--quick", "--url", redis_url],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "lookups/s" in result.stdout and "bytes/entry" in result.stdout
