"""Prometheus metrics of the worker pool (names documented in the README's metrics table).

Prefork children each write their samples to PROMETHEUS_MULTIPROC_DIR; the parent serves the sum on
SHIELD_METRICS_PORT.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import Counter, Histogram

log = logging.getLogger("shield.worker.metrics")

INFERENCE_SECONDS = Histogram(
    "shield_inference_seconds", "Model inference time per batch of texts", ["scanner", "variant"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_TEXTS = Histogram(
    "shield_batch_texts", "Texts per scan task", buckets=(1, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
CACHE_LOOKUPS = Counter("shield_cache_lookups_total", "Result cache lookups by the workers", ["result"])
CACHE_EVICTIONS = Counter("shield_cache_evictions_total", "Cache entries evicted by the workers' inserts")
MODEL_LOAD_SECONDS = Histogram(
    "shield_model_load_seconds", "Time to fetch, verify and load a model", ["model"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
ERRORS = Counter("shield_errors_total", "Errors by kind", ["kind"])
TEXTS = Counter("shield_texts_total", "Texts scanned by the workers, by how they were answered", ["source"])


def serve(port: int, address: str = "127.0.0.1") -> None:
    """Serve the aggregated metrics of all pool processes on `address:port` (call in the pool's parent)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    if not port:
        return
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    try:
        start_http_server(port, addr=address, registry=registry)
        log.info("metrics on %s:%d/metrics", address, port)
    except OSError as exc:
        log.warning("metrics server not started on %s:%d: %s", address, port, exc)


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
