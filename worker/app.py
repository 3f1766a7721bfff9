"""The worker's Celery app: `celery -A worker.app worker -Q shield.cpu.int8` (or `llm-shield worker`).

Models load in each pool process after the fork (`worker_process_init`), never in the parent.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shield.celery_config import make_celery
from shield.config import Variant
from shield.contract import (
    ML_SCANNERS,
    QUEUES,
    TASK_SCAN_BATCH,
    BatchOutcome,
    ScanBatch,
    TextResult,
    deliveries_key,
    job_results_key,
    ready_key,
    served_models_key,
)
from shield.settings import get_settings
from worker import metrics

log = logging.getLogger("shield.worker")
settings = get_settings()
app = make_celery(settings)

#: Queue names this worker consumes, captured in the parent and inherited by the pool processes.
_consumed_queues: list[str] = []
_scanner = None  # worker.scan.BatchScanner, created per pool process


def variants_for(queues: list[str]) -> list[Variant]:
    by_queue = {q: v for v, q in QUEUES.items()}
    return [by_queue[q] for q in queues if q in by_queue]


_client = None  # redis.Redis of this process, made after the fork


def _redis():  # type: ignore[no-untyped-def]
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(app.conf.shield_redis_url, socket_timeout=10, socket_connect_timeout=5,
                                       health_check_interval=30)
    return _client


@signals.celeryd_after_setup.connect
def _remember_queues(sender: str, instance, conf, **_: object) -> None:  # type: ignore[no-untyped-def]
    _consumed_queues[:] = list(instance.app.amqp.queues.consume_from)


@signals.worker_init.connect
def _start_metrics(**_: object) -> None:
    if settings.heartbeat_file:  # a file left by a previous run must not say "ready" before models load
        Path(settings.heartbeat_file).unlink(missing_ok=True)
    metrics.serve(settings.metrics_port)


@signals.heartbeat_sent.connect
def _heartbeat(**_: object) -> None:
    """The consumer loop is alive: refresh the liveness file (cheaper than `celery inspect ping`).
    Only once a pool process has created it, after loading its models: existence means ready."""
    if settings.heartbeat_file and Path(settings.heartbeat_file).exists():
        touch_heartbeat()


@signals.worker_process_shutdown.connect
def _process_down(pid: int | None = None, **_: object) -> None:
    metrics.mark_process_dead(pid or os.getpid())


@signals.worker_process_init.connect
def _load_models(**_: object) -> None:
    """Create this process's sessions for the models its queues serve and publish what it serves."""
    from shield.cache import ResultCache
    from shield.errors import ShieldError
    from worker.loader import ModelLoader
    from worker.scan import BatchScanner

    global _scanner
    cache_url = settings.cache_url_value() or app.conf.shield_redis_url
    cache = ResultCache.from_url(cache_url, settings.cache_settings())
    _scanner = BatchScanner(settings=settings, loader=ModelLoader(settings), cache=cache)
    variants = variants_for(_consumed_queues) or [Variant.int8]
    for variant in variants:
        for scanner in ML_SCANNERS:
            try:
                model = _scanner.engine(scanner, variant.value).model
            except ShieldError as exc:
                log.warning("not preloading %s/%s: %s", scanner, variant.value, exc)
                continue
            _redis().hset(served_models_key(variant), scanner, model.served().model_dump_json())
        _redis().sadd(ready_key(variant), f"{socket.gethostname()}:{os.getpid()}")
    touch_heartbeat()


def touch_heartbeat() -> None:
    if settings.heartbeat_file:
        path = Path(settings.heartbeat_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def _scanner_instance():  # type: ignore[no-untyped-def]
    if _scanner is None:  # a solo pool or an eager call: no fork happened
        _load_models()
    return _scanner


def _error_results(count: int, message: str) -> list[TextResult]:
    return [TextResult(valid=False, error=message) for _ in range(count)]


@app.task(name=TASK_SCAN_BATCH, bind=True, ignore_result=True, acks_late=True,
          autoretry_for=(RedisConnectionError, RedisTimeoutError), retry_backoff=True, max_retries=5)
def scan_batch(self, payload: dict) -> None:  # type: ignore[no-untyped-def]
    """Scan one batch and push its outcome to the job's result list."""
    batch = ScanBatch.model_validate(payload)
    client = _redis()
    key = deliveries_key(batch.job_id, batch.batch_index)
    deliveries = client.incr(key)
    client.expire(key, settings.result_ttl_seconds)
    if deliveries > settings.max_deliveries:
        metrics.ERRORS.labels("poison_batch").inc()
        results = _error_results(len(batch.texts), (
            f"batch {batch.batch_index} was delivered {deliveries - 1} times and its worker died each time; "
            "its rows were given up (check the worker logs for crashes or memory kills)"))
    else:
        started = time.perf_counter()
        try:
            results = _scanner_instance().scan(batch.texts, batch.options)
        except SoftTimeLimitExceeded:
            metrics.ERRORS.labels("time_limit").inc()
            results = _error_results(len(batch.texts), (
                f"batch took longer than the task time limit ({settings.task_soft_time_limit}s); "
                "lower --batch-size or raise SHIELD_TASK_SOFT_TIME_LIMIT"))
        except (RedisConnectionError, RedisTimeoutError):
            raise  # Redis trouble: retried by Celery
        except Exception as exc:  # a bug or bad data must not lose the batch's rows
            metrics.ERRORS.labels("internal").inc()
            log.exception("batch %s/%d failed", batch.job_id, batch.batch_index)
            results = _error_results(len(batch.texts), f"internal error while scanning: {exc}")
        log.debug("batch %s/%d: %d texts in %.3f s", batch.job_id, batch.batch_index, len(batch.texts),
                  time.perf_counter() - started)
    outcome = BatchOutcome(job_id=batch.job_id, batch_index=batch.batch_index, results=results,
                           worker=f"{socket.gethostname()}:{os.getpid()}")
    pipe = client.pipeline()
    pipe.rpush(job_results_key(batch.job_id), outcome.model_dump_json())
    pipe.expire(job_results_key(batch.job_id), settings.result_ttl_seconds)
    pipe.execute()
    touch_heartbeat()
