"""The result cache partitioned over a real three-master Redis Cluster on loopback (and partition semantics on one
server): entries on every master, the bound held across all of them, one pipeline per master per batch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from llm_shield.cache import ResultCache
from llm_shield.config import CacheSettings
from llm_shield.contract import CACHE_SCHEMA_VERSION
from tests.redis_cluster import LocalRedisCluster
from tests.test_scan import cli, rows
from tests.workers import WorkerProcess

pytestmark = [pytest.mark.integration]


def digest(name: object) -> bytes:
    return hashlib.sha256(str(name).encode()).digest()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    c = LocalRedisCluster.start(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


@pytest.fixture()
def cluster_url(cluster: LocalRedisCluster) -> Iterator[str]:
    yield cluster.url
    for url in cluster.node_urls():
        redis.Redis.from_url(url).flushall()


def master_entries(cluster: LocalRedisCluster) -> list[int]:
    """Cache entries each master holds, counted on the masters themselves (not through the cache)."""
    out = []
    for url in cluster.node_urls():
        node = redis.Redis.from_url(url)
        out.append(sum(node.zcard(key) for key in node.scan_iter(match="shield:{cache*:lru")))
    return out


def test_partitions_spread_over_every_master_and_the_bound_holds(cluster: LocalRedisCluster,
                                                                 cluster_url: str) -> None:
    settings = CacheSettings(max_entries=600, ttl_seconds=3600, partitions=16)
    cache = ResultCache.from_url(cluster_url, settings)
    for start in range(0, 3000, 64):
        cache.set_many([(digest(i), f"v{i}".encode()) for i in range(start, start + 64)])
        assert sum(master_entries(cluster)) <= 600
    per_master = master_entries(cluster)
    assert all(n > 0 for n in per_master), per_master
    assert sum(per_master) == 600  # every partition full, none over its share: 600 // 16 (+1 for 600 % 16 of them)
    by_server = cache.entries_by_server()
    assert len(by_server) == 3 and sum(by_server.values()) == 600
    stats = cache.stats()
    assert (stats.entries, stats.inserts - stats.evictions) == (600, 600)
    recent = [digest(i) for i in range(2936, 3000)]
    assert cache.get_many(recent) == [f"v{i}".encode() for i in range(2936, 3000)]
    assert cache.get_many([digest("never")]) == [None]
    assert cache.clear() == 16 * 4
    assert master_entries(cluster) == [0, 0, 0]


def test_a_batch_is_one_pipeline_per_master(cluster_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ResultCache.from_url(cluster_url, CacheSettings(max_entries=10_000, partitions=32))
    keys = [digest(i) for i in range(256)]
    cache.set_many([(k, b"x") for k in keys])
    executed: list[int] = []
    real = redis.client.Pipeline.execute

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        executed.append(len(self.command_stack))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    assert cache.get_many(keys) == [b"x"] * 256
    assert len(executed) == 3 and sum(executed) == 32  # 32 partitions' script calls, one pipeline per master


def test_moved_slots_are_followed(cluster: LocalRedisCluster, cluster_url: str) -> None:
    """A stale slot map (as after a resharding) costs one retry, not an error or a miss."""
    cache = ResultCache.from_url(cluster_url, CacheSettings(max_entries=1000, partitions=8))
    cache.set_many([(digest(i), b"v") for i in range(100)])
    client: RedisCluster = cache._redis
    nodes = client.nodes_manager
    wrong = {slot: [nodes.slots_cache[(slot + 5461) % 16384][0]] for slot in nodes.slots_cache}
    nodes.slots_cache = wrong  # every slot points at another master
    assert cache.get_many([digest(i) for i in range(100)]) == [b"v"] * 100


def test_an_unreachable_cluster_is_a_miss_not_a_crash() -> None:
    cache = ResultCache.from_url("redis+cluster://127.0.0.1:1/0", CacheSettings(partitions=4), socket_timeout=0.5)
    assert cache.get_many([digest("a")]) == [None]
    assert cache.set_many([(digest("a"), b"v")]) == 0
    assert not cache.available and cache.unavailable_errors == 2


def test_one_server_partitions_split_the_bound_and_clear_removes_every_layout(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    cache = ResultCache(client, CacheSettings(max_entries=10, partitions=4))
    assert [p.max_entries for p in cache.partitions] == [3, 3, 2, 2]
    assert cache.partitions[1].lru == f"shield:{{cache:1/4}}:v{CACHE_SCHEMA_VERSION}:lru"
    cache.set_many([(digest(i), b"v") for i in range(100)])
    assert cache.stats().entries == 10
    single = ResultCache(client, CacheSettings(max_entries=10))
    assert single.lru_key == f"shield:{{cache}}:v{CACHE_SCHEMA_VERSION}:lru"  # one partition: the layout before partitions existed
    single.set_many([(digest("a"), b"v")])
    assert cache.get_many([digest("a")]) == [None]  # another partition count is another cache
    assert single.clear() == 4 * 4 + 4
    assert client.dbsize() == 0


@pytest.mark.slow
def test_a_scan_uses_the_cluster_cache(cluster: LocalRedisCluster, cluster_url: str, redis_url: str,
                                       model_env: dict[str, str], tmp_path: Path) -> None:
    env = {**model_env, "SHIELD_REDIS_URL": redis_url, "SHIELD_CACHE_URL": cluster_url,
           "SHIELD_CACHE_PARTITIONS": "12"}
    worker = WorkerProcess(redis_url, "int8", env, log_dir=tmp_path).wait_ready()
    try:
        src = tmp_path / "in.jsonl"
        src.write_text("".join(json.dumps({"text": f"status report {i} for the storage team"}) + "\n"
                               for i in range(120)))
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        done = cli("scan", str(src), "-o", str(first), "--batch-size", "16", "--no-progress", env=env)
        assert done.returncode == 0, done.stderr
        assert sum(master_entries(cluster)) == 120 and all(n > 0 for n in master_entries(cluster))
        done = cli("scan", str(src), "-o", str(second), "--batch-size", "16", "--no-progress", env=env)
        assert done.returncode == 0, done.stderr
        assert "cache hit rate: 100.0%" in done.stderr
        assert all(r["cached"] for r in rows(second))
    finally:
        worker.stop()
