"""How one node's cores are shared: worker processes per node and onnxruntime threads per process.

Measured on short texts (README "Benchmarks"): one process per core with one onnxruntime thread each beats one
process whose threads span the cores (no per-run synchronisation between threads), so that is the default
for the CPU queues. A GPU pool runs GPU_PROCESSES processes sharing its GPU: each tokenizes on its own core,
and one process leaves an H200 ~90% idle (README "GPU": 4 processes gave 2x the rows/s of 1).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

from llm_shield.config import Variant
from llm_shield.settings import ShieldSettings


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """CPUs the container's CPU quota allows (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), rounded up;
    None when there is no quota."""
    try:
        fields = (root / "cpu.max").read_text().split()  # "max 100000" or "<quota> <period>"
    except OSError:
        fields = []
    if fields:
        if fields[0] == "max":
            return None
        try:
            return max(1, math.ceil(int(fields[0]) / int(fields[1] if len(fields) > 1 else 100_000)))
        except ValueError:
            return None
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return max(1, math.ceil(quota_us / period_us)) if quota_us > 0 and period_us > 0 else None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by the container's CPU quota (onnxruntime and
    os.cpu_count() see the host's cores; SHIELD_WORKER_CONCURRENCY overrides all of it)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return min(cpus, limit) if limit else cpus


#: Pool processes of a worker serving the GPU queue (measured: 4 gave 2x the rows/s of 1 on one H200).
GPU_PROCESSES = 4


def worker_processes(settings: ShieldSettings, variants: Iterable[Variant]) -> int:
    """Pool processes for a worker serving `variants`: SHIELD_WORKER_CONCURRENCY when set, else one per CPU
    (GPU_PROCESSES, at most one per CPU, when it serves the GPU queue)."""
    if settings.worker_concurrency:
        return settings.worker_concurrency
    if Variant.fp16 in set(variants):
        return min(GPU_PROCESSES, available_cpus())
    return available_cpus()


def intra_op_threads(settings: ShieldSettings) -> int:
    """onnxruntime threads per process: SHIELD_INTRA_OP_THREADS, else the node's CPUs divided among its
    processes (at least one)."""
    if settings.intra_op_threads:
        return settings.intra_op_threads
    processes = settings.worker_concurrency or available_cpus()
    return max(1, available_cpus() // processes)
