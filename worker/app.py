"""The worker's Celery app: `celery -A llm_shield.worker.app worker -Q shield.cpu.int8` (or `llm-shield worker`).

Models load in each pool process after the fork (`worker_process_init`), never in the parent.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NoReturn

from llm_shield.settings import get_settings

settings = get_settings()
# Prefork children write their samples to files the parent sums up: the folder must be known before
# prometheus_client is first imported, whichever way the worker was started (`llm-shield worker` or plain
# `celery -A llm_shield.worker.app worker`). One we make here is removed at shutdown.
_own_metrics_dir: str | None = None
_metrics_dir_owner = os.getpid()
if settings.metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import atexit

    _own_metrics_dir = tempfile.mkdtemp(prefix="shield-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir
    atexit.register(lambda: _remove_metrics_dir())  # a clean stop or a refused start; not a SIGKILL
    if "prometheus_client.values" in sys.modules:  # imported already (Celery loads Flower's command plugin,
        from prometheus_client import values        # which imports it): make later metrics multiprocess

        values.ValueClass = values.get_value_class()

from celery import signals  # noqa: E402
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from llm_shield import liveness  # noqa: E402
from llm_shield.celery_config import make_celery  # noqa: E402
from llm_shield.config import Variant  # noqa: E402
from llm_shield.contract import (  # noqa: E402
    ML_SCANNERS,
    QUEUES,
    TASK_SCAN_BATCH,
    TASK_SCAN_SPLIT,
    BatchOutcome,
    ScanBatch,
    ScanSplit,
    SplitOutcome,
    TextResult,
    cancelled_key,
    claims_key,
    deliveries_key,
    job_results_key,
    served_models_key,
)
from llm_shield.worker import metrics  # noqa: E402

log = logging.getLogger("shield.worker")
app = make_celery(settings)
#: This pool process, as the liveness set and batch claims name it.
_member = ""

#: Queue names this worker consumes, captured in the parent and inherited by the pool processes.
_consumed_queues: list[str] = []
_scanner = None  # worker.scan.BatchScanner, created per pool process


def variants_for(queues: list[str]) -> list[Variant]:
    by_queue = {q: v for v, q in QUEUES.items()}
    return [by_queue[q] for q in queues if q in by_queue]


def _variants() -> list[Variant]:
    """The variants this worker serves (int8 when it consumes none of the project's queues)."""
    return variants_for(_consumed_queues) or [Variant.int8]


_client = None  # redis.Redis of this pool process, made after the fork
_node_client = None  # the node's (parent's) redis.Redis


def _new_client():  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(app.shield_redis_url, socket_timeout=10, socket_connect_timeout=5,
                                health_check_interval=30)


def _redis(node: bool = False):  # type: ignore[no-untyped-def]
    """This process's client: a pool process's own (made after the fork), or the node's (the parent's: it receives
    the messages and beats for the node; pool processes forked later never use it)."""
    global _client, _node_client
    if node:
        _node_client = _node_client or _new_client()
        return _node_client
    _client = _client or _new_client()
    return _client


@signals.celeryd_after_setup.connect
def _remember_queues(sender: str, instance, conf, **_: object) -> None:  # type: ignore[no-untyped-def]
    _consumed_queues[:] = list(instance.app.amqp.queues.consume_from)


class _WithholdBodies(logging.Filter):
    """Celery logs the body and headers (with `argsrepr`) of a message it refuses (a pickle, an unknown task)
    in full; they hold users' texts and whatever else a sender put there, so the logs get their sizes only."""

    _SECTIONS = re.compile(r"(?P<lead>(?:^|\n)body: |message body was:\s*|message headers:\s*|headers:)"
                           r"(?P<value>.*?)(?=\]\n|\n\n|\n?\Z)", re.S)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is left alone
            return True
        if "body" in message or "headers" in message:
            record.msg = self._SECTIONS.sub(
                lambda m: f"{m['lead']}<withheld, {len(m['value'])} characters>", message)
            record.args = None
        return True


def _withhold_bodies() -> None:
    for name in ("celery.worker.consumer.consumer", "celery.worker.consumer", "celery.worker.strategy",
                 "kombu.messaging", "celery.worker.request"):
        logging.getLogger(name).addFilter(_WithholdBodies())


_withhold_bodies()


def _fatal(message: str) -> None:
    """One line on stderr (and in the log), then the whole worker stops: it must not look ready."""
    log.critical(message)
    print(f"error: {message}", file=sys.stderr, flush=True)


def _unservable_models(variants: list[Variant]) -> list[str]:
    """What keeps this worker from serving its models (empty when they can all be fetched and verified)."""
    from llm_shield.errors import ShieldError
    from llm_shield.registry import load_catalog
    from llm_shield.registry.fetch import fetch_entry

    try:
        catalog = load_catalog(settings.catalog_location)
    except ShieldError as exc:
        return [str(exc)]
    problems = []
    for variant in variants:
        entries = [e for e in catalog.models if e.variant == variant and e.task in ML_SCANNERS]
        if not entries:
            problems.append(f"the catalog {settings.catalog_location} has no model for variant {variant.value}")
        for entry in entries:
            try:
                fetch_entry(entry, settings)
            except ShieldError as exc:
                problems.append(f"{entry.id}: {exc}")
    return problems


@signals.worker_init.connect
def _check_models_then_serve_metrics(sender=None, **_: object) -> None:  # type: ignore[no-untyped-def]
    """In the parent, before any pool process starts: models must be servable, then metrics are served."""
    if settings.heartbeat_file:  # a file left by a previous run must not say "ready" before models load
        Path(settings.heartbeat_file).unlink(missing_ok=True)
    queues = list(sender.app.amqp.queues.consume_from) if sender is not None else []
    problems = _unservable_models(variants_for(queues) or [Variant.int8])
    if problems and not settings.allow_missing_models:
        _fatal(f"cannot serve the models: {problems[0]}"
               + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
               + "; fix the catalog (`llm-shield models list/verify`), or set SHIELD_ALLOW_MISSING_MODELS=true "
               "to answer with heuristics instead")
        raise SystemExit(3)  # the metrics folder goes at exit
    for problem in problems:
        log.warning("serving heuristics instead of a model (SHIELD_ALLOW_MISSING_MODELS): %s", problem)
    metrics.serve(settings.metrics_port, settings.metrics_address)


def _remove_metrics_dir() -> None:
    if _own_metrics_dir and os.getpid() == _metrics_dir_owner:  # never from a forked pool process
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


@signals.heartbeat_sent.connect
def _heartbeat(**_: object) -> None:
    """The consumer loop is alive: refresh the liveness file (cheaper than `celery inspect ping`).
    Only once a pool process has created it, after loading its models: existence means ready."""
    if settings.heartbeat_file and Path(settings.heartbeat_file).exists():
        touch_heartbeat()


@signals.worker_process_shutdown.connect
def _process_down(pid: int | None = None, **_: object) -> None:
    metrics.mark_process_dead(pid or os.getpid())
    _leave(_member, node=False)


def _leave(member: str, node: bool) -> None:
    """Take a pool process (or the node) out of the liveness set at a clean stop."""
    if not member:
        return
    try:
        for variant in _variants():
            liveness.leave(_redis(node=node), variant, member, nodes=node)
    except Exception:  # noqa: BLE001 - Redis gone: the entry ages out
        pass


def _beat_forever(variants: list[Variant], client, member: str, nodes: bool) -> None:  # type: ignore[no-untyped-def]
    """A heartbeat (a daemon thread: it dies with its process, and so does the beat)."""
    while True:
        try:
            for variant in variants:
                liveness.beat(client, variant, member, nodes=nodes)
        except Exception as exc:  # noqa: BLE001 - Redis away for a moment: the next beat tries again
            log.debug("heartbeat failed: %s", exc)
        time.sleep(liveness.BEAT_SECONDS)


#: The node (the parent process, which receives the messages and hands them to the pool), as claims name it.
_node_member = ""


@signals.worker_ready.connect
def _node_ready(**_: object) -> None:
    global _node_member
    _node_member = f"{socket.gethostname()}:{os.getpid()}"
    threading.Thread(target=_beat_forever, args=(_variants(), _redis(node=True), _node_member, True),
                     name="shield-node-heartbeat", daemon=True).start()


@signals.task_received.connect
def _claim(request=None, **_: object) -> None:  # type: ignore[no-untyped-def]
    """Record which node holds a batch: if that node dies, the producer sends the batch again at once instead
    of waiting for the broker's visibility timeout."""
    try:
        if request is None or request.name not in (TASK_SCAN_BATCH, TASK_SCAN_SPLIT) or not _node_member:
            return
        payload = request.args[0] if request.args else request.kwargs.get("payload")
        job_id = payload["job_id"]
        index = payload["batch_index"] if request.name == TASK_SCAN_BATCH else payload["split"]["index"]
        pipe = _redis(node=True).pipeline(transaction=False)
        pipe.hset(claims_key(job_id), str(index), _node_member)
        pipe.expire(claims_key(job_id), settings.result_ttl_seconds)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - a claim is an optimisation: the visibility timeout still applies
        log.warning("could not record the claim of a batch: %s", exc)


@signals.worker_shutdown.connect
def _node_down(**_: object) -> None:
    _leave(_node_member, node=True)


@signals.worker_process_init.connect
def _load_models(**_: object) -> None:
    """Create this process's sessions for the models its queues serve and publish what it serves."""
    from llm_shield.cache import ResultCache
    from llm_shield.errors import ShieldError
    from llm_shield.worker.loader import ModelLoader
    from llm_shield.worker.scan import BatchScanner

    global _scanner, _member
    cache_url = settings.cache_url_value() or app.shield_redis_url
    cache = ResultCache.from_url(cache_url, settings.cache_settings())
    _scanner = BatchScanner(settings=settings, loader=ModelLoader(settings), cache=cache)
    _member = f"{socket.gethostname()}:{os.getpid()}"
    variants = _variants()
    try:
        entries = _scanner.loader.catalog.models
    except ShieldError as exc:  # only with SHIELD_ALLOW_MISSING_MODELS: the parent's check stops the worker
        log.warning("serving heuristics only: %s", exc)
        entries = []
    for variant in variants:
        for scanner in ML_SCANNERS:
            if not any(e.task == scanner and e.variant == variant for e in entries):
                continue  # not in the catalog: jobs asking for it get heuristics or error rows
            try:
                model = _scanner.engine(scanner, variant.value).model
            except ShieldError as exc:
                if settings.allow_missing_models:
                    log.warning("serving heuristics for %s/%s (SHIELD_ALLOW_MISSING_MODELS): %s",
                                scanner, variant.value, exc)
                    continue
                _stop_worker(f"cannot load {scanner}/{variant.value}: {exc}; the worker stops "
                             "(SHIELD_ALLOW_MISSING_MODELS=true answers with heuristics instead)")
            except Exception as exc:  # a bug, not a missing model: stop visibly instead of never getting ready
                _stop_worker(f"cannot load {scanner}/{variant.value}: unexpected {type(exc).__name__}: {exc}; "
                             "the worker stops")
            _redis().hset(served_models_key(variant), scanner, model.served().model_dump_json())
        liveness.beat(_redis(), variant, _member)
    threading.Thread(target=_beat_forever, args=(variants, _redis(), _member, False), name="shield-heartbeat",
                     daemon=True).start()
    touch_heartbeat()


def _stop_worker(message: str) -> NoReturn:
    """From a pool process: say why, stop the whole worker (not just this process), exit."""
    _fatal(message)
    os.kill(os.getppid(), signal.SIGTERM)
    os._exit(3)


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
    pipe = client.pipeline()
    pipe.exists(cancelled_key(batch.job_id))
    pipe.incr(key)
    pipe.expire(key, settings.result_ttl_seconds)
    cancelled, deliveries = pipe.execute()[:2]
    if cancelled:  # the producer was interrupted: nobody will read this batch's outcome
        log.info("batch %s/%d dropped: its job was cancelled", batch.job_id, batch.batch_index)
        return
    if deliveries > settings.max_deliveries:
        metrics.ERRORS.labels("poison_batch").inc()
        results = _error_results(len(batch.texts), (
            f"batch {batch.batch_index} was delivered {deliveries - 1} times and its worker died each time; "
            "its rows were given up (check the worker logs for crashes or memory kills)"))
    else:
        started = time.perf_counter()
        try:
            results = _scanner_instance().scan(batch.texts, batch.options, count_lookups=not batch.cache_checked)
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


@app.task(name=TASK_SCAN_SPLIT, bind=True, ignore_result=True, acks_late=True,
          soft_time_limit=settings.split_time_limit, time_limit=settings.split_time_limit + 30,
          autoretry_for=(RedisConnectionError, RedisTimeoutError), retry_backoff=True, max_retries=5)
def scan_split(self, payload: dict) -> None:  # type: ignore[no-untyped-def]
    """Distributed mode: scan one split of an input and publish its output part (`llm_shield.worker.splits`)."""
    from llm_shield.errors import InputError
    from llm_shield.worker.splits import run_split

    task = ScanSplit.model_validate(payload)
    client = _redis()
    key = deliveries_key(task.job_id, task.split.index)
    pipe = client.pipeline()
    pipe.exists(cancelled_key(task.job_id))
    pipe.incr(key)
    pipe.expire(key, settings.result_ttl_seconds)
    cancelled, deliveries = pipe.execute()[:2]
    if cancelled:
        log.info("split %s/%d dropped: its job was cancelled", task.job_id, task.split.index)
        return
    worker = f"{socket.gethostname()}:{os.getpid()}"
    outcome = SplitOutcome(job_id=task.job_id, index=task.split.index)
    if deliveries > settings.max_deliveries:
        metrics.ERRORS.labels("poison_batch").inc()
        outcome.error = (f"split {task.split.index} was delivered {deliveries - 1} times and its worker died each "
                         "time (check the worker logs for crashes or memory kills)")
    else:
        scanner = _scanner_instance()
        try:
            outcome.done = run_split(task, lambda texts: scanner.scan(texts, task.options), settings, worker)
        except SoftTimeLimitExceeded:
            metrics.ERRORS.labels("time_limit").inc()
            outcome.error = (f"split {task.split.index} took longer than SHIELD_SPLIT_TIME_LIMIT "
                             f"({settings.split_time_limit}s); use a smaller --split-size")
        except InputError as exc:  # the input or the output location cannot be read or written
            outcome.error = f"split {task.split.index}: {exc}"
        except (RedisConnectionError, RedisTimeoutError):
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the submitter, which stops with exit 3
            metrics.ERRORS.labels("internal").inc()
            log.exception("split %s/%d failed", task.job_id, task.split.index)
            outcome.error = f"split {task.split.index}: internal error: {exc}"
    pipe = client.pipeline()
    pipe.rpush(job_results_key(task.job_id), outcome.model_dump_json())
    pipe.expire(job_results_key(task.job_id), settings.result_ttl_seconds)
    pipe.execute()
    touch_heartbeat()
