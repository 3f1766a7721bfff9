"""Semantics of the shared result cache on fakeredis (with Lua): fast, single process."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import llm_shield.cache.result_cache as rc
from llm_shield.cache import CacheStats, ResultCache
from llm_shield.config import CacheSettings
from llm_shield.contract import CACHE_SCHEMA_VERSION
from llm_shield.errors import ConfigError, TransientError


def digest(name: object) -> bytes:
    return hashlib.sha256(str(name).encode()).digest()


@pytest.fixture()
def client() -> Iterator[fakeredis.FakeRedis]:
    server = fakeredis.FakeServer()
    yield fakeredis.FakeRedis(server=server)


def make(client: redis.Redis, max_entries: int = 100, ttl: int = 3600) -> ResultCache:
    return ResultCache(client, CacheSettings(max_entries=max_entries, ttl_seconds=ttl))


def dead_client() -> redis.Redis:
    """A client of a Unix socket that does not exist: every command fails at once with ConnectionError."""
    return redis.Redis(unix_socket_path="/nonexistent/shield-cache-test.sock", retry=Retry(NoBackoff(), 0))


def members(client: redis.Redis, key: str) -> set[bytes]:
    return set(client.zrange(key, 0, -1))


def test_miss_insert_hit_and_stats(client: fakeredis.FakeRedis) -> None:
    cache = make(client)
    a, b, c = digest("a"), digest("b"), digest("c")
    assert cache.get_many([a, b]) == [None, None]
    cache.set_many([(a, b'{"score":0.9}'), (b, b'{"score":0.1}')])
    assert cache.get_many([a, c, b]) == [b'{"score":0.9}', None, b'{"score":0.1}']
    stats = cache.stats()
    assert isinstance(stats, CacheStats)
    assert (stats.hits, stats.misses, stats.inserts, stats.entries) == (2, 3, 2, 2)
    assert stats.hit_rate == pytest.approx(2 / 5)
    assert (stats.max_entries, stats.ttl_seconds) == (100, 3600)
    assert cache.available and cache.unavailable_errors == 0


def test_overwrite_is_an_update_not_an_insert(client: fakeredis.FakeRedis) -> None:
    cache = make(client)
    a = digest("a")
    cache.set_many([(a, b"1")])
    cache.set_many([(a, b"2"), (a, b"3")])
    assert cache.get_many([a]) == [b"3"]
    stats = cache.stats()
    assert (stats.inserts, stats.updates, stats.entries) == (1, 2, 1)


def test_key_layout_uses_raw_digests_under_one_hash_tag(client: fakeredis.FakeRedis) -> None:
    cache = make(client)
    a = digest("a")
    cache.set_many([(a, b"v")])
    cache.get_many([a])
    prefix = f"shield:{{cache}}:v{CACHE_SCHEMA_VERSION}:"
    assert cache.prefix == prefix
    assert sorted(client.keys("*")) == sorted(f"{prefix}{name}".encode() for name in ("lru", "exp", "values", "stats"))
    assert client.hgetall(f"{prefix}values") == {a: b"v"}
    assert members(client, f"{prefix}lru") == members(client, f"{prefix}exp") == {a}


def test_least_recently_read_entry_is_evicted_first(client: fakeredis.FakeRedis) -> None:
    cache = make(client, max_entries=3)
    a, b, c, d, e = (digest(x) for x in "abcde")
    for key in (a, b, c):
        cache.set_many([(key, key[:4])])
    assert cache.get_many([a]) == [a[:4]]  # a is now the most recently used
    cache.set_many([(d, b"d")])
    assert cache.get_many([b]) == [None]  # b: the least recently used
    cache.set_many([(e, b"e")])
    assert cache.get_many([c]) == [None]
    assert cache.get_many([a, d, e]) == [a[:4], b"d", b"e"]
    assert cache.stats().evictions == 2


def test_bound_holds_for_a_batch_larger_than_the_cache(client: fakeredis.FakeRedis) -> None:
    cache = make(client, max_entries=10)
    cache.set_many([(digest(i), b"x") for i in range(25)])
    stats = cache.stats()
    assert stats.entries == 10 and stats.evictions == 15
    assert client.hlen(cache.values_key) == client.zcard(cache.exp_key) == 10


def test_eviction_work_per_call_is_bounded_after_the_bound_is_lowered(client: fakeredis.FakeRedis) -> None:
    make(client, max_entries=100).set_many([(digest(i), b"x") for i in range(60)])
    small = make(client, max_entries=5)
    small.set_many([(digest("new"), b"y")])
    # 61 entries, bound 5: this call may evict only its batch size (1) + EVICT_EXTRA
    assert small.stats().evictions == 1 + rc.EVICT_EXTRA
    assert client.zcard(small.lru_key) == 61 - 1 - rc.EVICT_EXTRA
    for i in range(10):
        small.set_many([(digest(f"more{i}"), b"z")])
    assert client.zcard(small.lru_key) == 5  # converged
    assert client.hlen(small.values_key) == client.zcard(small.exp_key) == 5


def test_expired_member_is_removed_on_read(client: fakeredis.FakeRedis) -> None:
    cache = make(client)
    a, b = digest("a"), digest("b")
    cache.set_many([(a, b"1"), (b, b"2")])
    client.zadd(cache.exp_key, {a: 0})  # a's expiry in the past
    assert cache.get_many([a, b]) == [None, b"2"]
    assert members(client, cache.lru_key) == members(client, cache.exp_key) == {b}
    assert client.hkeys(cache.values_key) == [b]
    assert cache.stats().expired == 1


def test_member_whose_value_is_gone_is_removed_on_read(client: fakeredis.FakeRedis) -> None:
    cache = make(client)
    a = digest("a")
    cache.set_many([(a, b"1")])
    client.hdel(cache.values_key, a)
    assert cache.get_many([a]) == [None]
    assert client.zcard(cache.lru_key) == client.zcard(cache.exp_key) == 0


def test_purge_on_write_is_bounded(client: fakeredis.FakeRedis) -> None:
    cache = make(client, max_entries=1000)
    old = [digest(i) for i in range(300)]
    cache.set_many([(key, b"x") for key in old])
    client.zadd(cache.exp_key, {key: 0 for key in old})  # all expired
    cache.set_many([(digest("new"), b"y")])
    purged = 1 + rc.PURGE_EXTRA  # batch size + the constant
    assert cache.stats().expired == purged
    assert client.zcard(cache.lru_key) == client.hlen(cache.values_key) == 300 - purged + 1
    for i in range(3):
        cache.set_many([(digest(f"more{i}"), b"z")])
    assert members(client, cache.lru_key) == {digest("new")} | {digest(f"more{i}") for i in range(3)}
    assert members(client, cache.exp_key) == members(client, cache.lru_key)
    assert cache.stats().expired == 300


def test_cache_keys_expire_with_their_last_entry(client: fakeredis.FakeRedis) -> None:
    cache = make(client, ttl=600)
    cache.set_many([(digest("a"), b"1")])
    for key in (cache.lru_key, cache.exp_key, cache.values_key, cache.stats_key):
        assert 590_000 < client.pttl(key) <= 600_001


def test_large_batches_are_chunked(client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rc, "SCRIPT_BATCH", 7)
    cache = make(client)
    keys = [digest(i) for i in range(30)]
    cache.set_many([(key, key) for key in keys[:20]])
    assert cache.get_many(keys) == keys[:20] + [None] * 10
    assert cache.stats().inserts == 20


@pytest.mark.parametrize("batch", [512, 7])
def test_noscript_is_handled(client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    monkeypatch.setattr(rc, "SCRIPT_BATCH", batch)
    cache = make(client)
    keys = [digest(i) for i in range(20)]
    cache.set_many([(key, b"v") for key in keys])
    client.script_flush()
    assert cache.get_many(keys) == [b"v"] * 20
    client.script_flush()
    cache.set_many([(digest("x"), b"w")])
    assert cache.get_many([digest("x")]) == [b"w"]


def test_clear_removes_only_cache_keys(client: fakeredis.FakeRedis) -> None:
    cache = make(client)
    cache.set_many([(digest(i), b"v") for i in range(10)])
    client.set("shield:job:1:results", "keep")
    client.set("celery-task-meta-1", "keep")
    client.set("shield:{cache}:v0:lru", "old schema")  # an older version of the cache: also the cache's own
    assert cache.clear() == 5
    assert sorted(client.keys("*")) == [b"celery-task-meta-1", b"shield:job:1:results"]
    assert cache.get_many([digest(1)]) == [None]


@pytest.mark.parametrize("settings", [CacheSettings(enabled=False), CacheSettings(max_entries=0)])
def test_disabled_cache_never_touches_redis(settings: CacheSettings) -> None:
    cache = ResultCache(dead_client(), settings)
    assert not cache.enabled
    assert cache.get_many([digest("a"), digest("b")]) == [None, None]
    cache.set_many([(digest("a"), b"v")])
    assert cache.clear() == 0
    assert cache.stats().entries == 0
    assert cache.available and cache.unavailable_errors == 0


def test_empty_batches_make_no_round_trip() -> None:
    cache = make(dead_client())
    assert cache.get_many([]) == []
    cache.set_many([])
    assert cache.available and cache.unavailable_errors == 0


def test_unreachable_redis_degrades_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    cache = make(dead_client())
    with caplog.at_level(logging.WARNING, logger="shield.cache"):
        assert cache.get_many([digest("a"), digest("b")]) == [None, None]
        cache.set_many([(digest("a"), b"v")])
        assert cache.get_many([digest("a")]) == [None]
    assert not cache.available
    assert cache.unavailable_errors == 3
    assert len([r for r in caplog.records if r.name == "shield.cache"]) == 1
    with pytest.raises(TransientError):
        cache.stats()


def test_timeouts_count_as_unavailable_and_recovery_is_seen(
    client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = make(client)

    def timeout(*args: object, **kwargs: object) -> None:
        raise redis.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(type(client.pipeline()), "execute", timeout)
    assert cache.get_many([digest("a")]) == [None]
    cache.set_many([(digest("a"), b"v")])
    assert (cache.available, cache.unavailable_errors) == (False, 2)
    monkeypatch.undo()
    cache.set_many([(digest("a"), b"v")])
    assert cache.get_many([digest("a")]) == [b"v"]
    assert cache.available


def test_other_errors_raise(client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = make(client)
    broken = "return redis.call('NO_SUCH_COMMAND')"
    monkeypatch.setattr(rc, "_LOOKUP", rc._Script(broken, hashlib.sha1(broken.encode()).hexdigest()))
    with pytest.raises(redis.ResponseError):
        cache.get_many([digest("a")])
    assert cache.unavailable_errors == 0


def test_keys_must_be_raw_digests(client: fakeredis.FakeRedis) -> None:
    cache = make(client)
    with pytest.raises(ValueError):
        cache.get_many([digest("a").hex().encode()])
    with pytest.raises(ValueError):
        cache.set_many([(b"short", b"v")])
    with pytest.raises(TypeError):
        cache.set_many([(digest("a"), "not bytes")])  # type: ignore[list-item]


def test_client_and_namespace_are_checked(client: fakeredis.FakeRedis) -> None:
    with pytest.raises(ConfigError):
        ResultCache(fakeredis.FakeRedis(decode_responses=True), CacheSettings())
    with pytest.raises(ConfigError):
        ResultCache(client, CacheSettings(), namespace="shield:cache")
    assert ResultCache(client, CacheSettings(), namespace="t:{x}").lru_key == f"t:{{x}}:v{CACHE_SCHEMA_VERSION}:lru"


@pytest.mark.parametrize(
    ("url", "password", "connection_class"),
    [
        ("redis://:s3cret@cache.example:6380/2", "s3cret", redis.Connection),
        ("rediss://user:s3cret@cache.example:6380/0", "s3cret", redis.SSLConnection),
        ("unix://:s3cret@/run/redis/redis.sock?db=1", "s3cret", redis.UnixDomainSocketConnection),
    ],
)
def test_from_url_sets_a_short_timeout(url: str, password: str, connection_class: type) -> None:
    cache = ResultCache.from_url(url, CacheSettings(), socket_timeout=0.5)
    pool = cache._client.connection_pool
    assert pool.connection_class is connection_class
    assert pool.connection_kwargs["password"] == password
    assert pool.connection_kwargs["socket_timeout"] == pool.connection_kwargs["socket_connect_timeout"] == 0.5
    assert ResultCache.from_url(url, CacheSettings())._client.connection_pool.connection_kwargs["socket_timeout"] == 2.0
