"""Throughput and memory of the shared result cache on a real redis-server, measured side by side in one run.

    python bench/bench_cache.py                # its own redis-server on a Unix socket, 50,000 entries
    python bench/bench_cache.py --url redis://host:6379/0 --entries 200000
    python bench/bench_cache.py --quick        # tiny run, for the test suite's smoke test

It writes only under its own namespace (``shield:{cache-bench}``) and removes it at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from llm_shield.cache import ResultCache  # noqa: E402
from llm_shield.config import CacheSettings  # noqa: E402
from llm_shield.local_redis import LocalRedis  # noqa: E402

NAMESPACE = "shield:{cache-bench}"


def value_for(i: int) -> bytes:
    """A realistic cached verdict: an MLScore plus the model that produced it (about 200 bytes of JSON)."""
    rng = random.Random(i)
    return json.dumps(
        {
            "label": rng.choice(["INJECTION", "SAFE"]),
            "score": round(rng.random(), 6),
            "windows": rng.randint(1, 4),
            "truncated": False,
            "model": {
                "id": "protectai/deberta-v3-base-prompt-injection-v2",
                "variant": "int8",
                "sha256": hashlib.sha256(b"model").hexdigest(),
            },
        },
        separators=(",", ":"),
    ).encode()


def digests(tag: str, count: int) -> list[bytes]:
    return [hashlib.sha256(f"{tag}:{i}".encode()).digest() for i in range(count)]


def batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def timed(call: Callable[[Sequence], object], work: list[Sequence]) -> float:
    """Seconds to run `call` over every batch of `work`, one after the other."""
    start = time.perf_counter()
    for batch in work:
        call(batch)
    return time.perf_counter() - start


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def run(url: str, entries: int, batch: int, rounds: int) -> None:
    client = redis.Redis.from_url(url)
    cache = ResultCache(client, CacheSettings(max_entries=entries, ttl_seconds=3600), namespace=NAMESPACE)
    cache.clear()
    rng = random.Random(0)
    keys = digests("fill", entries)
    fill = batches([(key, value_for(i)) for i, key in enumerate(keys)], batch)
    hits = [rng.sample(keys, batch) for _ in range(rounds)]
    misses = batches(digests("miss", rounds * batch), batch)
    evicting = batches([(key, value_for(i)) for i, key in enumerate(digests("more", rounds * batch))], batch)

    before = used_memory(client)
    fill_s = timed(cache.set_many, fill)
    per_entry = (used_memory(client) - before) / entries
    sampled = cache.stats()
    rows = [
        ("lookup, all hits", rounds, timed(cache.get_many, hits)),
        ("lookup, all misses", rounds, timed(cache.get_many, misses)),
        ("insert, filling (no eviction)", len(fill), fill_s),
        (f"insert at the bound (evicts {batch})", rounds, timed(cache.set_many, evicting)),
    ]
    stats = cache.stats()
    assert stats.entries == entries and stats.evictions == rounds * batch, stats
    assert cache.unavailable_errors == 0

    server = client.info("server")
    print(f"result cache bench: {entries:,} entries, batches of {batch}, values ~{len(value_for(0))} B JSON")
    print(f"client: Python {platform.python_version()}, {os.cpu_count()} CPUs (shared with redis-server); "
          f"redis-server {server['redis_version']} at {url.split('@')[-1]}")
    print()
    header = f"operation (batch of {batch})"
    print(f"{header:<36} {'batches':>8} {'ms/batch':>9} {'lookups/s':>11} {'inserts/s':>11}")
    for name, count, seconds in rows:
        rate = count * batch / seconds
        lookups, inserts = (f"{rate:,.0f}", "") if name.startswith("lookup") else ("", f"{rate:,.0f}")
        print(f"{name:<36} {count:>8,} {seconds / count * 1000:>9.3f} {lookups:>11} {inserts:>11}")
    print()
    print(f"memory: {per_entry:,.0f} bytes/entry (INFO used_memory delta / entries, after the fill)")
    if sampled.memory_bytes is not None:
        kind = "exact" if sampled.memory_exact else "sampled"
        print(f"        {sampled.memory_bytes / entries:,.0f} bytes/entry "
              f"(stats(): MEMORY USAGE of the cache's keys, {kind})")
    cache.clear()
    client.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running Redis (default: start a private redis-server)")
    parser.add_argument("--entries", type=int, default=50_000, help="entries to fill the cache with")
    parser.add_argument("--batch", type=int, default=64, help="entries per get_many/set_many call")
    parser.add_argument("--rounds", type=int, default=2_000, help="batches timed per lookup/insert row")
    parser.add_argument("--quick", action="store_true", help="a tiny run (2,000 entries, 50 rounds)")
    args = parser.parse_args(argv)
    if args.quick:
        args.entries, args.rounds = 2_000, 50
    if args.url:
        run(args.url, args.entries, args.batch, args.rounds)
        return
    with LocalRedis.start() as server:
        run(server.url, args.entries, args.batch, args.rounds)


if __name__ == "__main__":
    main()
