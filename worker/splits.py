"""A worker's side of distributed mode: read one split, scan it batch by batch, publish its part and marker."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from itertools import islice

from llm_shield.contract import PartDone, ScanSplit, TextResult
from llm_shield.errors import InputError
from llm_shield.producer.job import JobStats
from llm_shield.producer.output import ResultWriter
from llm_shield.producer.splits import PartStore, done_name, dump, load_manifest, read_marker, read_split
from llm_shield.settings import ShieldSettings

log = logging.getLogger("shield.worker.split")


def _batches(records: Iterator, size: int) -> Iterator[list]:
    while batch := list(islice(records, size)):
        yield batch


class StalePlanError(InputError):
    """The output location now holds another plan: this split belongs to a job that was replaced."""


def _current(store: PartStore, task: ScanSplit) -> bool:
    manifest = load_manifest(store)
    return manifest is not None and manifest.plan_id == task.plan_id


def run_split(task: ScanSplit, scan: Callable[[list[str]], list[TextResult]], settings: ShieldSettings,
              worker: str) -> PartDone:
    """Scan `task.split` with `scan` (texts -> results, in order) and publish its part, then its marker.

    Idempotent: a split whose marker already exists is not scanned again (a redelivered or resent task), and a
    part is published whole (renamed into place, or one S3 upload), so a crash mid-split leaves no part."""
    store = PartStore(task.output)
    split = task.split
    marker_name = done_name(split.part)
    if not _current(store, task):
        raise StalePlanError(f"{store.location} was planned again since split {split.index} was sent (--overwrite); "
                             "the split was dropped")
    existing = read_marker(store, split)
    if existing is not None:
        log.info("split %d of job %s is already done", split.index, task.job_id)
        return existing
    started = time.perf_counter()
    stats = JobStats()
    with store.scratch() as scratch:
        writer = ResultWriter(str(scratch), overwrite=True)
        try:
            for batch in _batches(read_split(split, task.read, settings.max_text_chars), task.batch_size):
                texts = [r.text for r in batch if r.error is None]
                results = iter(scan(texts) if texts else [])
                for record in batch:
                    stats.rows_in += 1
                    if record.error is not None:
                        result = TextResult(valid=False, error=record.error)
                    else:
                        result = next(results)
                    stats.add(result, input_error=record.error is not None)
                    writer.write_result(record.id, record.source, result)
                writer.flush()
        finally:
            writer.close()
        digest, size = hashlib.sha256(), 0
        with open(scratch, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        if not _current(store, task):
            raise StalePlanError(f"{store.location} was planned again while split {split.index} was scanned "
                                 "(--overwrite); its part was not published")
        raced = read_marker(store, split)
        if raced is not None:  # another attempt of this split (a resend, a resumed job) finished first
            return raced
        store.put_file(split.part, scratch)
    done = PartDone(index=split.index, part=split.part, rows=stats.rows_out, flagged=stats.flagged,
                    errors=stats.errors, scan_errors=stats.scan_errors, first_scan_error=stats.first_scan_error,
                    model_rows=stats.model_rows, cache_hits=stats.cache_hits, bytes=size,
                    sha256=digest.hexdigest(), worker=worker, seconds=round(time.perf_counter() - started, 3))
    store.write(marker_name, dump(done))
    log.info("split %d of job %s: %d rows in %.1f s -> %s", split.index, task.job_id, done.rows, done.seconds,
             store.describe(split.part))
    return done
