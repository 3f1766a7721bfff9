"""`llm-shield scan`: inputs -> records -> scan job (on a broker, or on an embedded one) -> ordered output."""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import islice

from llm_shield.config import HybridMode
from llm_shield.contract import ML_SCANNERS, ScanOptions
from llm_shield.errors import InputError, InterruptedScanError, ScanIncompleteError
from llm_shield.settings import ShieldSettings

from llm_shield.producer.job import JobStats, ScanJob
from llm_shield.producer.output import ResultWriter

log = logging.getLogger("shield.producer")
LOG_EVERY_SECONDS = 10.0


@dataclass
class ReadOptions:
    """How inputs are read."""

    fmt: str | None = None
    text_field: str = "text"
    id_field: str | None = None
    csv_column: str | None = None


@dataclass
class ScanRequest:
    """Everything one `llm-shield scan` needs."""

    inputs: list[str]
    output: str
    options: ScanOptions = field(default_factory=ScanOptions)
    read: ReadOptions = field(default_factory=ReadOptions)
    broker: str | None = None
    resume: bool = False
    overwrite: bool = False
    batch_size: int | None = None
    progress: bool | None = None  # None: a bar on a terminal, log lines otherwise


def check_models_exist(options: ScanOptions, settings: ShieldSettings) -> None:
    """For a local run: fail early, with what to do, when a needed model is not in the catalog."""
    needed = [s for s in options.scanners if s in ML_SCANNERS]
    if not needed or options.mode is HybridMode.heuristic_only or options.ml_rollout_percent == 0:
        return
    from llm_shield.registry import load_catalog

    catalog = load_catalog(settings.catalog_location)
    for scanner in needed:
        catalog.find(scanner, options.variant)


def skip_done(records: Iterator, writer: ResultWriter) -> Iterator:
    """Skip the rows a resumed output already has, checking they are the same rows."""
    if not writer.skip:
        return records
    done = list(islice(records, writer.skip - 1))
    last = next(records, None)
    if last is None or last.id != writer.last_id or len(done) != writer.skip - 1:
        raise InputError(
            f"{writer.target} does not continue these inputs (its row {writer.skip} has id {writer.last_id!r}); "
            "resume with the same inputs and options, or use --overwrite"
        )
    return records


class Progress:
    """A tqdm bar on a terminal, plain periodic log lines elsewhere."""

    def __init__(self, stats: JobStats, enabled: bool | None, initial: int) -> None:
        self.stats = stats
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self._last_log = time.monotonic()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(unit=" rows", initial=initial, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int, waiting: str | None = None) -> None:
        s = self.stats
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(flagged=s.flagged, errors=s.errors, cached=s.cache_hits, refresh=False)
            if waiting:
                self.bar.set_description(waiting, refresh=True)
            elif self.bar.desc:
                self.bar.set_description("", refresh=False)
        elif time.monotonic() - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = time.monotonic()
            log.info("%d rows, %.0f rows/s, %d flagged, %d errors, %d from cache%s",
                     s.rows_out, s.rate, s.flagged, s.errors, s.cache_hits, f"; {waiting}" if waiting else "")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_scan(request: ScanRequest, settings: ShieldSettings) -> JobStats:
    """Run one scan job to completion; returns its statistics.

    Raises InterruptedScanError on SIGINT/SIGTERM (after writing every finished row in order and cancelling
    the batches it had sent) and ScanIncompleteError when rows could not be scanned."""
    from itertools import chain

    from llm_shield.producer.readers import expand_inputs, iter_records  # readers import boto3/pyarrow lazily

    inputs = expand_inputs(request.inputs)
    records = iter(iter_records(
        inputs, fmt=request.read.fmt, text_field=request.read.text_field, id_field=request.read.id_field,
        csv_column=request.read.csv_column, max_text_chars=settings.max_text_chars))
    first = next(records, None)  # reads the first header: a missing CSV column stops here, before any work
    records = chain([first], records) if first is not None else iter(())
    _check_csv_headers(inputs[1:], request.read, settings)
    writer = ResultWriter(request.output, resume=request.resume, overwrite=request.overwrite)
    job: ScanJob | None = None
    with ExitStack() as stack, _sigterm_as_interrupt():
        stack.callback(writer.close)
        try:
            broker = request.broker or settings.redis_url_value()
            if broker is None:
                check_models_exist(request.options, settings)
                from llm_shield.producer.embedded import EmbeddedCluster

                broker = stack.enter_context(EmbeddedCluster(settings, request.options.variant))
            cache = make_cache(settings, broker)
            job = ScanJob(broker, request.options, settings, cache=cache, batch_size=request.batch_size)
            records = skip_done(records, writer)
            progress = Progress(job.stats, request.progress, writer.skip)
            stack.callback(progress.close)
            job.on_wait = lambda: progress.update(0, job.waiting_for)  # type: ignore[union-attr]
            batch = job.batch_size
            # what start-up made (modules, clients) lives as long as the scan: keep the collector's full passes,
            # which would walk it over and over, off it meanwhile (over a tenth of a cached scan's CPU time)
            gc.freeze()
            stack.callback(gc.unfreeze)
            for n, (record, result) in enumerate(job.results(records), 1):
                writer.write_result(record.id, record.source, result)
                if n % batch == 0:
                    writer.flush()
                    progress.update(batch, job.waiting_for)
            progress.update(job.stats.rows_out % batch)
        except KeyboardInterrupt:
            if job is not None:
                job.cancel()
            done = writer.skip + (job.stats.rows_out if job is not None else 0)
            raise InterruptedScanError(_stopped_message("interrupted", done, request)) from None
        except ScanIncompleteError as exc:
            done = writer.skip + (job.stats.rows_out if job is not None else 0)
            raise ScanIncompleteError(f"{exc} ({_stopped_message('stopped', done, request)})") from None
        job.stats.resumed_from = writer.skip
        return job.stats


def _check_csv_headers(inputs: list[str], read: ReadOptions, settings: ShieldSettings) -> None:
    """The headers of the other local CSV/TSV inputs, before any work (S3 objects and stdin: when reached)."""
    from llm_shield.producer.readers import detect_format, is_s3, iter_records

    for uri in inputs:
        kind = read.fmt or detect_format(uri)
        if kind in ("csv", "tsv") and uri != "-" and not is_s3(uri):
            next(iter(iter_records([uri], fmt=read.fmt, text_field=read.text_field, id_field=read.id_field,
                                   csv_column=read.csv_column, max_text_chars=settings.max_text_chars)), None)


def _stopped_message(what: str, done: int, request: ScanRequest) -> str:
    if request.output == "-":
        return f"{what} after {done} rows"
    return (f"{what} after {done} rows, all written to {request.output} in order; rerun the same command with "
            "--resume to continue")


class _sigterm_as_interrupt:
    """SIGTERM (a container stop, `kill`) ends a scan like Ctrl-C does: finished rows written, exit 130. SIGINT
    does so too even when the process inherited it ignored (started in the background by a non-interactive
    shell, or under nohup): `kill -INT` then still stops the scan as documented."""

    def __enter__(self) -> None:
        import signal
        import threading

        self._old: dict = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, old in self._old.items():
            if old is not None:
                signal.signal(sig, old)


def check_complete(stats: JobStats) -> None:
    """ScanIncompleteError when some rows could not be scanned (error rows that are not bad input)."""
    if stats.scan_errors:
        raise ScanIncompleteError(f"{stats.scan_errors} row(s) could not be scanned and are error rows in the "
                                  f"output (first: {stats.first_scan_error})")


def make_cache(settings: ShieldSettings, broker: str):  # type: ignore[no-untyped-def]
    cache_settings = settings.cache_settings()
    if not cache_settings.enabled:
        return None
    from llm_shield.cache import ResultCache

    return ResultCache.from_url(settings.cache_url_value() or broker, cache_settings)


def format_summary(stats: JobStats) -> str:
    errors = f"errors: {stats.errors}"
    if stats.errors:
        errors += f" ({stats.input_errors} bad input, {stats.scan_errors} not scanned)"
    lines = [
        f"rows in: {stats.rows_in}  rows out: {stats.rows_out}  flagged: {stats.flagged}  {errors}",
        f"cache hit rate: {stats.cache_hit_rate:.1%} of {stats.model_rows} model-scored rows  rows/s: {stats.rate:.1f}  time: {stats.seconds:.1f} s",
    ]
    if stats.resumed_from:
        lines.append(f"resumed after {stats.resumed_from} rows already in the output")
    if stats.cache_unavailable:
        lines.append("cache: unreachable during the job; rows were scanned without it")
    if stats.cache_corrupt:
        lines.append(f"cache: {stats.cache_corrupt} unreadable entries were treated as misses and removed")
    if stats.fallbacks:
        lines.append(f"fallback: {stats.fallbacks} rows were decided by heuristics because a model was unavailable")
    if stats.resent:
        lines.append(f"resent: {stats.resent} batch(es) sent again after a worker or the broker was lost")
    for arm, (rows, flagged) in sorted(stats.arms.items()):
        lines.append(f"arm {arm}: {rows} rows, {flagged} flagged ({flagged / rows:.1%})" if rows else f"arm {arm}: 0 rows")
    return "\n".join(lines)
