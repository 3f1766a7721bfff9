"""`llm-shield scan`: inputs -> records -> scan job (on a broker, or on an embedded one) -> ordered output."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import islice

from shield.config import HybridMode
from shield.contract import ML_SCANNERS, ScanOptions
from shield.errors import InputError
from shield.settings import ShieldSettings

from producer.job import JobStats, ScanJob
from producer.output import ResultWriter

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
    from shield.registry import load_catalog

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

    def update(self, n: int) -> None:
        s = self.stats
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(flagged=s.flagged, errors=s.errors, cached=s.cache_hits, refresh=False)
        elif time.monotonic() - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = time.monotonic()
            log.info("%d rows, %.0f rows/s, %d flagged, %d errors, %d from cache",
                     s.rows_out, s.rate, s.flagged, s.errors, s.cache_hits)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_scan(request: ScanRequest, settings: ShieldSettings) -> JobStats:
    """Run one scan job to completion; returns its statistics."""
    from producer.readers import expand_inputs, iter_records  # readers import boto3/pyarrow lazily

    inputs = expand_inputs(request.inputs)
    writer = ResultWriter(request.output, resume=request.resume, overwrite=request.overwrite)
    with ExitStack() as stack:
        stack.callback(writer.close)
        broker = request.broker or settings.redis_url_value()
        if broker is None:
            check_models_exist(request.options, settings)
            from producer.embedded import EmbeddedCluster

            broker = stack.enter_context(EmbeddedCluster(settings, request.options.variant))
        cache = make_cache(settings, broker)
        job = ScanJob(broker, request.options, settings, cache=cache, batch_size=request.batch_size)
        records = skip_done(iter(iter_records(
            inputs, fmt=request.read.fmt, text_field=request.read.text_field, id_field=request.read.id_field,
            csv_column=request.read.csv_column, max_text_chars=settings.max_text_chars)), writer)
        progress = Progress(job.stats, request.progress, writer.skip)
        stack.callback(progress.close)
        batch = job.batch_size
        for n, (record, result) in enumerate(job.results(records), 1):
            writer.write_result(record.id, record.source, result)
            if n % batch == 0:
                writer.flush()
                progress.update(batch)
        progress.update(job.stats.rows_out % batch)
        job.stats.resumed_from = writer.skip
        return job.stats


def make_cache(settings: ShieldSettings, broker: str):  # type: ignore[no-untyped-def]
    cache_settings = settings.cache_settings()
    if not cache_settings.enabled:
        return None
    from shield.cache import ResultCache

    return ResultCache.from_url(settings.cache_url_value() or broker, cache_settings)


def format_summary(stats: JobStats) -> str:
    lines = [
        f"rows in: {stats.rows_in}  rows out: {stats.rows_out}  flagged: {stats.flagged}  errors: {stats.errors}",
        f"cache hit rate: {stats.cache_hit_rate:.1%} of {stats.model_rows} model-scored rows  rows/s: {stats.rate:.1f}  time: {stats.seconds:.1f} s",
    ]
    if stats.resumed_from:
        lines.append(f"resumed after {stats.resumed_from} rows already in the output")
    if stats.cache_unavailable:
        lines.append("cache: unreachable during the job; rows were scanned without it")
    for arm, (rows, flagged) in sorted(stats.arms.items()):
        lines.append(f"arm {arm}: {rows} rows, {flagged} flagged ({flagged / rows:.1%})" if rows else f"arm {arm}: 0 rows")
    return "\n".join(lines)
