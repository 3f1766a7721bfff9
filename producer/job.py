"""A scan job: records in, result rows out in input order, batches sent to the workers of one variant.

Each chunk of `batch_size` records is first answered from the shared cache where possible; the rest go to
the workers as one task. At most `max_inflight_batches` tasks are outstanding and at most
`MAX_PENDING_FACTOR` times as many chunks wait to be written (behind a slow batch), so memory stays flat.

The job never waits silently (`producer.watch`): it knows which pool processes are alive, stops when
none serves its queue for `no_worker_timeout` seconds, sends a batch again when the process that took it
died, and stops when nothing was answered for `stall_timeout` seconds.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

from llm_shield.config import DetectionMethod
from llm_shield.contract import (
    TASK_SCAN_BATCH,
    BatchOutcome,
    MLScore,
    OutputRow,
    ResultFields,
    ScanBatch,
    ScanOptions,
    ServedModel,
    TextResult,
    cancelled_key,
    claims_key,
    error_fields,
    job_results_key,
    ml_cache_keys,
    queue_for,
    served_models_key,
)
from llm_shield.detection.decide import TextPlan, assemble_fields, plan_text
from llm_shield.errors import BrokerUnavailableError
from llm_shield.producer.watch import Watcher
from llm_shield.settings import ShieldSettings, redact_url

if TYPE_CHECKING:
    from llm_shield.producer.readers import InputRecord

log = logging.getLogger("shield.producer")

#: How long a job waits for a lost broker to come back before it stops (and --resume can continue it).
RECONNECT_SECONDS = 60.0
#: Chunks waiting to be written (finished or not), as a multiple of max_inflight_batches.
MAX_PENDING_FACTOR = 2
_FALLBACK = DetectionMethod.ml_fallback_to_heuristic.value

#: A row's result: JSON data where the producer decided the row itself (`contract.ResultFields`: cheap to build
#: and to write, which is most of a cached row's cost), the validated TextResult where a worker did.
Result = ResultFields | TextResult


@dataclass
class JobStats:
    """Counters shown in the progress bar and the summary."""

    rows_in: int = 0
    rows_out: int = 0
    flagged: int = 0
    errors: int = 0
    input_errors: int = 0  # rows whose input was bad (an error row by design)
    scan_errors: int = 0  # rows that could not be scanned (no worker answer, a model failure, ...)
    fallbacks: int = 0  # rows a heuristic decided because the model was unavailable
    first_scan_error: str | None = None
    cache_corrupt: int = 0  # cache entries that could not be read (treated as misses and removed)
    resent: int = 0  # batches sent again (a dead worker, a broker restart)
    cache_hits: int = 0
    model_rows: int = 0  # rows whose verdict needed a model score (from the cache or from inference)
    sent_to_workers: int = 0
    cache_unavailable: bool = False
    resumed_from: int = 0
    started: float = field(default_factory=time.monotonic)
    arms: dict[str, list[int]] = field(default_factory=dict)  # arm -> [rows, flagged]

    def add(self, row: Result, input_error: bool = False) -> None:
        """Count one written row by its result."""
        if isinstance(row, dict):
            error, valid, arm, models, cached = row["error"], row["valid"], row["arm"], row["model"], row["cached"]
            fallback = any(r["method"] == _FALLBACK for r in row["scanners"].values())
        else:
            error, valid, arm, models, cached = row.error, row.valid, row.arm, row.model, row.cached
            fallback = any(r.method == _FALLBACK for r in row.scanners.values())
        self.rows_out += 1
        if error:
            self.errors += 1
            if input_error:
                self.input_errors += 1
            else:
                self.scan_errors += 1
                self.first_scan_error = self.first_scan_error or error
        elif not valid:
            self.flagged += 1
        if models:
            self.model_rows += 1
            self.cache_hits += int(cached)
        if fallback:
            self.fallbacks += 1
        if arm:
            counts = self.arms.setdefault(arm, [0, 0])
            counts[0] += 1
            counts[1] += int(not valid and not error)

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.model_rows if self.model_rows else 0.0

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.rows_out / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Chunk:
    """Records of one batch and whatever is known of their results so far."""

    index: int
    records: list  # producer.readers.InputRecord
    results: dict[int, Result] = field(default_factory=dict)  # position in chunk -> result
    sent: list[str] = field(default_factory=list)  # distinct texts sent to a worker
    sent_at: float = 0.0
    batch: ScanBatch | None = None  # kept so it can be sent again after a broker outage

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.records)


class ScanJob:
    """Runs one job against a broker whose workers serve `options.variant`."""

    def __init__(self, broker_url: str, options: ScanOptions, settings: ShieldSettings, cache=None,  # noqa: ANN001
                 batch_size: int | None = None) -> None:
        self.options = options
        self.settings = settings
        self.batch_size = batch_size or settings.batch_size
        self.cache = cache
        self.job_id = uuid.uuid4().hex
        self.queue = queue_for(options.variant)
        self.broker_url = broker_url
        self._celery = None  # made on the first send: a fully cached job never imports Celery
        self.redis = redis.Redis.from_url(broker_url, socket_timeout=30, socket_connect_timeout=5,
                                          health_check_interval=30)
        self.stats = JobStats()
        self._check_broker(broker_url)
        self._run_id = self._server_run_id()
        self.served = self._served_models()
        self.on_wait = None  # called about once a second while the job waits for workers (progress display)
        self.watcher = Watcher(self.redis, self.job_id, options.variant, self.queue, settings.no_worker_timeout,
                               settings.stall_timeout)

    @property
    def waiting_for(self) -> str | None:
        """Why the job is waiting, for progress lines."""
        return self.watcher.waiting_for

    def _check_broker(self, url: str) -> None:
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise BrokerUnavailableError(f"cannot reach the broker at {redact_url(url)}: {exc}") from None

    def _server_run_id(self) -> str | None:
        """The broker's run id, new at every Redis start (None where INFO is not allowed)."""
        try:
            return self.redis.info("server").get("run_id")
        except redis.ResponseError:
            return None

    def _served_models(self) -> dict[str, ServedModel]:
        raw = self.redis.hgetall(served_models_key(self.options.variant))
        served = {}
        for k, v in raw.items():
            try:
                served[k.decode()] = ServedModel.model_validate_json(v)
            except ValueError:  # written by an incompatible version: look nothing up in the cache for it
                log.warning("ignoring an unreadable served-model record for %s", k.decode(errors="replace"))
        return served

    def cancel(self) -> None:
        """Tell the workers to drop this job's batches that are still queued (after an interrupt)."""
        try:
            self.redis.set(cancelled_key(self.job_id), 1, ex=self.settings.result_ttl_seconds)
        except redis.RedisError:
            pass  # the batches are scanned for nothing, their outcomes expire
    # -- public ---------------------------------------------------------------------------------
    def run(self, records: Iterable) -> Iterator[OutputRow]:
        """Result rows in the order of `records`, one per record."""
        for record, result in self.results(records):
            fields = result if isinstance(result, dict) else result.__dict__
            yield OutputRow(id=record.id, source=record.source, **fields)

    def results(self, records: Iterable) -> Iterator[tuple[InputRecord, Result]]:
        """(record, result) pairs in the order of `records`: what `run` yields, before the two are made into
        one OutputRow (the CLI's writer serializes the pair directly)."""
        pending: deque[Chunk] = deque()
        outstanding: dict[int, Chunk] = {}
        try:
            for chunk in self._chunks(records):
                self._prepare(chunk)
                pending.append(chunk)
                if chunk.sent:
                    outstanding[chunk.index] = chunk
                while len(outstanding) >= self.settings.max_inflight_batches:
                    self._collect(outstanding, block=True)
                self._collect(outstanding, block=False)
                yield from self._drain(pending)
                # behind one slow batch, finished chunks wait to be written: stop reading while too many wait
                while len(pending) >= MAX_PENDING_FACTOR * self.settings.max_inflight_batches and outstanding:
                    self._collect(outstanding, block=True)
                    yield from self._drain(pending)
            while outstanding:
                self._collect(outstanding, block=True)
                yield from self._drain(pending)
            yield from self._drain(pending)
        finally:
            try:
                self.redis.delete(job_results_key(self.job_id), claims_key(self.job_id))
            except redis.RedisError:
                pass  # the list expires on its own (SHIELD_RESULT_TTL_SECONDS)

    # -- steps ----------------------------------------------------------------------------------
    def _chunks(self, records: Iterable) -> Iterator[Chunk]:
        batch: list = []
        index = 0
        for record in records:
            self.stats.rows_in += 1
            batch.append(record)
            if len(batch) == self.batch_size:
                yield Chunk(index, batch)
                index, batch = index + 1, []
        if batch:
            yield Chunk(index, batch)

    def _prepare(self, chunk: Chunk) -> None:
        """Answer what the record errors and the cache can; send the rest to the workers as one task."""
        texts: dict[str, TextPlan] = {}
        for pos, record in enumerate(chunk.records):
            if record.error is not None:
                chunk.results[pos] = error_fields(record.error)
            elif record.text not in texts:
                texts[record.text] = plan_text(record.text, self.options)
        local = self._answer_locally(texts)
        for pos, record in enumerate(chunk.records):
            if pos not in chunk.results and record.text in local:
                chunk.results[pos] = local[record.text]
        chunk.sent = [t for t in texts if t not in local]
        if chunk.sent:
            chunk.batch = ScanBatch(job_id=self.job_id, batch_index=chunk.index, options=self.options,
                                    texts=chunk.sent,
                                    cache_checked=all(self._looked_up(texts[t]) for t in chunk.sent))
            self._send(chunk.batch)
            chunk.sent_at = time.monotonic()
            self.stats.sent_to_workers += len(chunk.sent)

    def _send(self, batch: ScanBatch) -> None:
        try:  # kombu retries the publish itself (task_publish_retry_policy) while Redis comes back
            if self._celery is None:
                from llm_shield.celery_config import make_celery

                self._celery = make_celery(self.settings, self.broker_url)
            self._celery.send_task(TASK_SCAN_BATCH, args=[batch.model_dump(mode="json")], queue=self.queue)
        except Exception as exc:  # kombu wraps Redis errors in its own types
            raise BrokerUnavailableError(
                f"lost the broker while sending batch {batch.batch_index}: {exc}; "
                "rerun the same command with --resume once it is back") from None

    def _redis_call(self, op, outstanding: dict[int, Chunk]):  # type: ignore[no-untyped-def]
        """Run a Redis operation, riding out a broker restart: retry for up to `RECONNECT_SECONDS`, then
        send the outstanding batches again (a restart may have lost queued messages; duplicates are
        harmless: outcomes are matched by batch index and repeated texts come from the cache)."""
        deadline = time.monotonic() + RECONNECT_SECONDS
        lost = False
        while True:
            try:
                result = op()
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise BrokerUnavailableError(
                        f"lost the broker for over {RECONNECT_SECONDS:.0f} s ({exc}); "
                        "rerun the same command with --resume once it is back") from None
                if not lost:
                    log.warning("lost the broker (%s); reconnecting", exc)
                lost = True
                time.sleep(1.0)
        if lost:
            self._resend(outstanding, "broker is back")
        return result

    def _check_restart(self, outstanding: dict[int, Chunk]) -> None:
        """Catch a broker restart that happened between our commands: redis-py reconnects without a word, but
        the batch a worker held unacknowledged would only come back after the visibility timeout."""
        if self._run_id is not None and self._redis_call(self._server_run_id, outstanding) != self._run_id:
            self._resend(outstanding, "the broker restarted")

    def _resend(self, outstanding: dict[int, Chunk], why: str) -> None:
        log.warning("%s; sending %d outstanding batch(es) again", why, len(outstanding))
        for chunk in outstanding.values():
            if chunk.batch is not None:
                self._send(chunk.batch)
                chunk.sent_at = time.monotonic()
                self.stats.resent += 1
        try:
            self._run_id = self._server_run_id()
        except redis.RedisError:
            pass  # down again: the next call notices

    def _looked_up(self, plan: TextPlan) -> bool:
        """Whether the producer looks this text up in the cache (every model it needs is known to be served)."""
        return self.cache is not None and all(name in self.served for name in plan.needs_ml)

    def _answer_locally(self, texts: dict[str, TextPlan]) -> dict[str, ResultFields]:
        """Results for texts whose needed model scores are all cached (or that need no model at all)."""
        answers: dict[str, ResultFields] = {}
        wanted: dict[str, list[str]] = {}  # scanner -> texts whose score to look up
        for text, plan in texts.items():
            if not plan.needs_ml:
                answers[text] = assemble_fields(text, self.options, plan, {}, self.served, {}, cached=False)
            elif self._looked_up(plan):
                for name in plan.needs_ml:
                    wanted.setdefault(name, []).append(text)
        lookups: list[tuple[str, str, bytes]] = []
        for name, group in wanted.items():
            served = self.served[name]
            keys = ml_cache_keys(name, served.model, served.window, group)
            lookups += [(text, name, key) for text, key in zip(group, keys)]
        if not lookups:
            return answers
        found: dict[str, dict[str, MLScore]] = {}
        corrupt: list[bytes] = []
        for (text, name, key), raw in zip(lookups, self.cache.get_many([k for _, _, k in lookups])):
            if raw is None:
                continue
            try:
                found.setdefault(text, {})[name] = MLScore.model_validate_json(raw)
            except ValueError:  # a damaged or foreign entry: a miss, and removed so nobody meets it again
                corrupt.append(key)
        if corrupt:
            self.stats.cache_corrupt += len(corrupt)
            log.warning("%d unreadable cache entr%s treated as misses and removed", len(corrupt),
                        "y" if len(corrupt) == 1 else "ies")
            self.cache.delete_many(corrupt)
        self.stats.cache_unavailable = self.stats.cache_unavailable or not getattr(self.cache, "available", True)
        for text, scores in found.items():
            plan = texts[text]
            if set(scores) >= set(plan.needs_ml):
                answers[text] = assemble_fields(text, self.options, plan, scores, self.served, {}, cached=True)
        return answers

    def _collect(self, outstanding: dict[int, Chunk], block: bool) -> None:
        """Take finished batch outcomes off the job's result list."""
        key = job_results_key(self.job_id)
        while outstanding:
            if block:
                item = self._redis_call(lambda: self.redis.blpop([key], timeout=1), outstanding)
                raw = item[1] if item else None
            else:
                raw = self._redis_call(lambda: self.redis.lpop(key), outstanding)
            if raw is None:
                if block:  # a quiet second: is the broker the one we sent to? are the workers alive?
                    self._check_restart(outstanding)
                    self.watcher.check(outstanding, lambda i: self._resend_claimed(outstanding[i]),
                                       lambda op: self._redis_call(op, outstanding))
                    self._check_deadlines(outstanding)
                    if self.on_wait is not None:
                        self.on_wait()
                    continue
                return
            try:
                outcome = BatchOutcome.model_validate_json(raw)
            except ValueError:
                log.error("dropped an unreadable batch outcome on %s", key)
                continue
            self.watcher.answered()
            chunk = outstanding.pop(outcome.batch_index, None)
            if chunk is None:
                continue  # a duplicate outcome of a redelivered batch: already handled
            self._apply(chunk, outcome.results)
            block = False

    def _apply(self, chunk: Chunk, results: Sequence[Result]) -> None:
        by_text = dict(zip(chunk.sent, results))
        for pos, record in enumerate(chunk.records):
            if pos not in chunk.results:
                result = by_text.get(record.text)
                chunk.results[pos] = result if result is not None else error_fields(
                    "the worker returned no result for this row")

    def _resend_claimed(self, chunk: Chunk) -> None:
        """Send again a batch whose worker node stopped beating (`Watcher`)."""
        if chunk.batch is not None:
            self._send(chunk.batch)
            chunk.sent_at = time.monotonic()
            self.stats.resent += 1

    def _check_deadlines(self, outstanding: dict[int, Chunk]) -> None:
        limit = self.settings.visibility_timeout + self.settings.task_time_limit
        now = time.monotonic()
        for index, chunk in list(outstanding.items()):
            if now - chunk.sent_at > limit:
                log.error("batch %d got no answer in %d s; its rows become error rows", index, limit)
                self._apply(chunk, [error_fields(
                    f"no worker answered within {limit} s; is a worker consuming queue {self.queue}?")
                    for _ in chunk.sent])
                del outstanding[index]

    def _drain(self, pending: deque[Chunk]) -> Iterator[tuple[InputRecord, Result]]:
        while pending and pending[0].done:
            chunk = pending.popleft()
            for pos, record in enumerate(chunk.records):
                result = chunk.results[pos]
                self.stats.add(result, input_error=record.error is not None)
                yield record, result
