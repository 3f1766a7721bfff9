"""`llm-shield scan --distributed`: the work unit is a split, not a batch of rows.

The submitting process plans the splits (`producer.splits`), writes the manifest, sends one
`shield.scan_split` task per split that has no done marker yet, and waits: each worker reads its split,
scans it in batches (same cache, same models as `scan_batch`) and publishes one output part and its marker.
No row passes through the submitting process, so a job scales with the number of workers.

Resumable from any stop: `--resume` re-reads the manifest and sends only the splits without a marker; a
split that is scanned twice (a redelivery, a resend after a worker died, a resumed job whose first
submitter's tasks were still queued) publishes the same whole part again, never a duplicate row.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

import redis

from llm_shield.contract import (
    TASK_SCAN_SPLIT,
    PartDone,
    ReadSpec,
    ScanOptions,
    ScanSplit,
    SplitOutcome,
    SplitSpec,
    cancelled_key,
    claims_key,
    job_results_key,
    queue_for,
)
from llm_shield.errors import BrokerUnavailableError, ConfigError, InputError, ScanIncompleteError
from llm_shield.producer.splits import (
    DEFAULT_SPLIT_BYTES,
    MANIFEST,
    Manifest,
    PartStore,
    done_markers,
    dump,
    fingerprint,
    load_manifest,
    plan_splits,
)
from llm_shield.producer.watch import Watcher
from llm_shield.settings import ShieldSettings, redact_url

log = logging.getLogger("shield.producer")


@dataclass
class DistributedRequest:
    """Everything one `llm-shield scan --distributed` needs."""

    inputs: list[str]
    output: str
    options: ScanOptions = field(default_factory=ScanOptions)
    fmt: str | None = None
    read: ReadSpec = field(default_factory=ReadSpec)
    broker: str | None = None
    resume: bool = False
    overwrite: bool = False
    batch_size: int | None = None
    split_bytes: int = DEFAULT_SPLIT_BYTES


@dataclass
class DistributedStats:
    """What the summary prints: splits and rows, from the done markers."""

    splits: int = 0
    done_before: int = 0
    rows: int = 0
    flagged: int = 0
    errors: int = 0
    scan_errors: int = 0
    first_scan_error: str | None = None
    model_rows: int = 0
    cache_hits: int = 0
    resent: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, done: PartDone) -> None:
        self.rows += done.rows
        self.flagged += done.flagged
        self.errors += done.errors
        self.scan_errors += done.scan_errors
        self.first_scan_error = self.first_scan_error or done.first_scan_error
        self.model_rows += done.model_rows
        self.cache_hits += done.cache_hits

    def summary(self, location: str) -> str:
        seconds = time.monotonic() - self.started
        hit = self.cache_hits / self.model_rows if self.model_rows else 0.0
        lines = [f"splits: {self.splits} ({self.done_before} done before this run)  rows out: {self.rows}  "
                 f"flagged: {self.flagged}  errors: {self.errors}",
                 f"cache hit rate: {hit:.1%} of {self.model_rows} model-scored rows  time: {seconds:.1f} s",
                 f"parts and manifest in {location}; one file: llm-shield merge {location} -o OUT.jsonl"]
        if self.resent:
            lines.append(f"resent: {self.resent} split(s) sent again after a worker was lost")
        return "\n".join(lines)


def prepare(request: DistributedRequest, settings: ShieldSettings) -> tuple[PartStore, Manifest]:
    """The output location and the job's manifest: planned and written, or read back for --resume."""
    from llm_shield.producer.readers import expand_inputs, is_s3, s3_client

    if "-" in request.inputs:
        raise ConfigError("--distributed reads files and s3:// objects that every worker can reach; for standard "
                          "input leave --distributed out")
    if request.resume and request.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pick one")
    inputs = expand_inputs(request.inputs)
    store = PartStore(request.output)
    client = s3_client() if any(is_s3(u) for u in inputs) else None
    wanted = Manifest(inputs=[fingerprint(u, client) for u in inputs], fmt=request.fmt, read=request.read,
                      options=request.options, batch_size=request.batch_size or settings.batch_size,
                      split_bytes=request.split_bytes, splits=[])
    existing = load_manifest(store)
    if request.overwrite:
        store.remove_all()
    elif existing is not None:
        if not request.resume:
            raise InputError(f"{request.output} holds a distributed scan: pass --resume to finish it or --overwrite "
                             f"to start again")
        if not existing.same_job(wanted):
            raise InputError(f"{request.output} holds a scan of other inputs or options (or an input changed since "
                             f"it was planned); use --overwrite to start again, or another output folder")
        return store, existing
    elif store.names():
        raise InputError(f"{request.output} holds parts without a {MANIFEST}; use --overwrite or another folder")
    wanted.splits = plan_splits(inputs, request.fmt, request.split_bytes, wanted.inputs)
    store.write(MANIFEST, dump(wanted))
    return store, wanted


class SplitJob:
    """Sends a manifest's unfinished splits to the workers of its variant and waits until each has a marker."""

    def __init__(self, broker_url: str, manifest: Manifest, store: PartStore, settings: ShieldSettings) -> None:
        self.manifest, self.store, self.settings = manifest, store, settings
        self.job_id = uuid.uuid4().hex
        self.queue = queue_for(manifest.options.variant)
        self.broker_url = broker_url
        self.redis = redis.Redis.from_url(broker_url, socket_timeout=30, socket_connect_timeout=5,
                                          health_check_interval=30)
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise BrokerUnavailableError(f"cannot reach the broker at {redact_url(broker_url)}: {exc}") from None
        # a split takes minutes: waiting less than one split's time limit would call a busy job stalled
        stall = max(settings.stall_timeout, settings.split_time_limit + 60)
        self.watcher = Watcher(self.redis, self.job_id, manifest.options.variant, self.queue,
                               settings.no_worker_timeout, stall, unit="split")
        self._celery = None
        self.resent = 0

    def run(self, stats: DistributedStats, on_progress=None) -> None:  # noqa: ANN001
        """Send every split without a marker and wait for all of them; raises ScanIncompleteError when a split
        failed or the workers are gone, KeyboardInterrupt as it comes (call `cancel`)."""
        done = done_markers(self.store, self.manifest)
        stats.splits, stats.done_before = len(self.manifest.splits), len(done)
        for marker in done.values():
            stats.add(marker)
        outstanding = {s.index: s for s in self.manifest.splits if s.index not in done}
        for split in outstanding.values():
            self._send(split)
        failures: list[str] = []
        key = job_results_key(self.job_id)
        try:
            while outstanding:
                item = self._call(lambda: self.redis.blpop([key], timeout=1))
                if item is None:
                    self.watcher.check(outstanding, lambda i: self._resend(outstanding[i]), self._call)
                    if on_progress is not None:
                        on_progress(stats, len(outstanding), self.watcher.waiting_for)
                    continue
                try:
                    outcome = SplitOutcome.model_validate_json(item[1])
                except ValueError:
                    log.error("dropped an unreadable split outcome on %s", key)
                    continue
                self.watcher.answered()
                if outstanding.pop(outcome.index, None) is None:
                    continue  # a duplicate outcome (a resent split): already counted
                if outcome.done is not None:
                    stats.add(outcome.done)
                else:
                    failures.append(outcome.error or f"split {outcome.index} failed")
                    log.error("%s", failures[-1])
                if on_progress is not None:
                    on_progress(stats, len(outstanding), None)
        finally:
            stats.resent = self.resent
            try:
                self.redis.delete(key, claims_key(self.job_id))
            except redis.RedisError:
                pass
        if not failures:
            self.store.remove_scratch()  # what workers killed mid-split left behind
        if failures:
            raise ScanIncompleteError(f"{len(failures)} split(s) failed (first: {failures[0]}); the other parts are "
                                      f"done; rerun with --resume to try the failed ones again")

    def cancel(self) -> None:
        try:
            self.redis.set(cancelled_key(self.job_id), 1, ex=self.settings.result_ttl_seconds)
        except redis.RedisError:
            pass

    def _send(self, split: SplitSpec) -> None:
        task = ScanSplit(job_id=self.job_id, plan_id=self.manifest.plan_id, split=split, read=self.manifest.read, options=self.manifest.options,
                         output=self.store.location, batch_size=self.manifest.batch_size)
        try:
            if self._celery is None:
                from llm_shield.celery_config import make_celery

                self._celery = make_celery(self.settings, self.broker_url)
            self._celery.send_task(TASK_SCAN_SPLIT, args=[task.model_dump(mode="json")], queue=self.queue)
        except Exception as exc:  # kombu wraps Redis errors in its own types
            raise BrokerUnavailableError(f"lost the broker while sending split {split.index}: {exc}; rerun the "
                                         "same command with --resume once it is back") from None

    def _resend(self, split: SplitSpec) -> None:
        self._send(split)
        self.resent += 1

    def _call(self, op):  # type: ignore[no-untyped-def]
        try:
            return op()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailableError(f"lost the broker ({exc}); the workers carry on with the splits they "
                                         "hold; rerun the same command with --resume once it is back") from None


def run_distributed(request: DistributedRequest, settings: ShieldSettings) -> DistributedStats:
    """Plan (or resume) the job, run its unfinished splits on the broker's workers (an embedded Redis and local
    workers when there is no broker) and return the totals. Raises InterruptedScanError on SIGINT/SIGTERM
    (the workers drop the splits still queued) and ScanIncompleteError when splits failed."""
    from contextlib import ExitStack

    from llm_shield.errors import InterruptedScanError
    from llm_shield.producer.runner import _sigterm_as_interrupt, check_models_exist

    store, manifest = prepare(request, settings)
    stats = DistributedStats()
    job: SplitJob | None = None
    with ExitStack() as stack, _sigterm_as_interrupt():
        try:
            broker = request.broker or settings.redis_url_value()
            if broker is None:
                check_models_exist(manifest.options, settings)
                from llm_shield.producer.embedded import EmbeddedCluster

                broker = stack.enter_context(EmbeddedCluster(settings, manifest.options.variant))
            job = SplitJob(broker, manifest, store, settings)
            job.run(stats, _progress_logger())
        except KeyboardInterrupt:
            if job is not None:
                job.cancel()
            done = len(done_markers(store, manifest))
            raise InterruptedScanError(f"interrupted with {done} of {len(manifest.splits)} splits done in "
                                       f"{request.output}; rerun the same command with --resume to finish the "
                                       f"others") from None
    return stats


def _progress_logger():  # type: ignore[no-untyped-def]
    last = [time.monotonic()]

    def report(stats: DistributedStats, left: int, waiting: str | None) -> None:
        if time.monotonic() - last[0] >= 10.0:
            last[0] = time.monotonic()
            log.info("%d of %d splits done, %d rows, %d flagged%s", stats.splits - left, stats.splits, stats.rows,
                     stats.flagged, f"; {waiting}" if waiting else "")

    return report
