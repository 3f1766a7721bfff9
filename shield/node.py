"""How one node's cores are shared: worker processes per node and onnxruntime threads per process.

Measured on short texts (README "Benchmarks"): one process per core with one onnxruntime thread each beats one
process whose threads span the cores (no per-run synchronisation between threads), so that is the default
for the CPU queues. A GPU pool runs one process per GPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from shield.config import Variant
from shield.settings import ShieldSettings


def available_cpus() -> int:
    """CPUs this process may run on (affinity and cpuset aware; CPU quotas are not visible here, so set
    SHIELD_WORKER_CONCURRENCY to the pod's CPU limit in a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def worker_processes(settings: ShieldSettings, variants: Iterable[Variant]) -> int:
    """Pool processes for a worker serving `variants`: SHIELD_WORKER_CONCURRENCY when set, else one per CPU
    (one when it serves the GPU queue: a process per GPU)."""
    if settings.worker_concurrency:
        return settings.worker_concurrency
    if Variant.fp16 in set(variants):
        return 1
    return available_cpus()


def intra_op_threads(settings: ShieldSettings) -> int:
    """onnxruntime threads per process: SHIELD_INTRA_OP_THREADS, else the node's CPUs divided among its
    processes (at least one)."""
    if settings.intra_op_threads:
        return settings.intra_op_threads
    processes = settings.worker_concurrency or available_cpus()
    return max(1, available_cpus() // processes)
