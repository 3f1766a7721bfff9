"""Which workers are alive: heartbeats in sorted sets per variant, scored by Redis server time.

Two sets per variant: pool processes (`live_workers_key`: they beat once their models are loaded; "ready")
and worker nodes, the parent processes that receive the messages (`live_nodes_key`; a batch is claimed by
the node that received it, so a producer can tell when the node holding its batch is gone). Each member beats
every `BEAT_SECONDS`; one not heard from for `LIVE_SECONDS`
counts as dead (a killed process simply stops beating), and entries older than `FORGET_SECONDS` are removed,
so the set never keeps dead workers. Redis's own clock is used on both sides, so clock skew between machines
does not matter.
"""

from __future__ import annotations

from llm_shield.config import Variant
from llm_shield.contract import live_nodes_key, live_workers_key

BEAT_SECONDS = 5.0
LIVE_SECONDS = 15.0
FORGET_SECONDS = 3600.0

_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], math.floor(tonumber(ARGV[2])))
return 1
"""
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""


def _key(variant: Variant | str, nodes: bool) -> str:
    return live_nodes_key(variant) if nodes else live_workers_key(variant)


def beat(client, variant: Variant | str, member: str, nodes: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Record that `member` (host:pid) is alive and serves `variant`."""
    client.eval(_BEAT, 1, _key(variant, nodes), member, FORGET_SECONDS)


def leave(client, variant: Variant | str, member: str, nodes: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Remove `member` at a clean shutdown (a crash is noticed after LIVE_SECONDS instead)."""
    client.zrem(_key(variant, nodes), member)


def live_members(client, variant: Variant | str, within: float = LIVE_SECONDS,  # type: ignore[no-untyped-def]
                 nodes: bool = False) -> set[str]:
    """`host:pid` of the pool processes (or nodes) of `variant` heard from in the last `within` seconds."""
    return {m.decode() if isinstance(m, bytes) else m
            for m in client.eval(_LIVE, 1, _key(variant, nodes), within)}
