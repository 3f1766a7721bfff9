"""The contract between producer and workers: task and queue names, payload and result models, Redis keys.

Both sides import this module and nothing heavier, so it must stay free of onnxruntime and Celery.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llm_shield.config import DetectionMethod, HybridMode, Variant

#: Bumped whenever the meaning of a cached value changes; old entries then simply miss.
CACHE_SCHEMA_VERSION = 2
#: Every Redis key this project writes starts with this prefix (the broker's own keys do not).
KEY_PREFIX = "shield"

TASK_SCAN_BATCH = "shield.scan_batch"
#: Distributed mode: one task per split of the input; the worker reads it, scans it and writes its output part.
TASK_SCAN_SPLIT = "shield.scan_split"

#: One queue per model variant; a job is routed by the variant it asks for.
QUEUES: dict[Variant, str] = {
    Variant.int8: "shield.cpu.int8",
    Variant.fp32: "shield.cpu.fp32",
    Variant.fp16: "shield.gpu.fp16",
}

#: Scanners backed by an ML model (each also has a heuristic side, possibly empty).
ML_SCANNERS = ("prompt_injection", "toxicity", "sentiment")
#: Scanners that are heuristics only.
HEURISTIC_SCANNERS = ("secrets", "invisible_text")
DEFAULT_SCANNERS = ("prompt_injection",)
#: Most texts one task may carry (SHIELD_BATCH_SIZE is capped at this too).
MAX_BATCH_TEXTS = 4096


def queue_for(variant: Variant | str) -> str:
    """The queue that serves `variant`."""
    return QUEUES[Variant(variant)]


class ModelRef(BaseModel):
    """Which model produced a score; recorded in every result."""

    model_config = ConfigDict(frozen=True)

    id: str
    variant: Variant
    sha256: str


class WindowConfig(BaseModel):
    """Settings that change a model's raw output for a text, and so belong in its cache key."""

    model_config = ConfigDict(frozen=True)

    max_length: int
    stride: int
    max_windows: int
    window_penalty: float = 0.0


class MLScore(BaseModel):
    """A model's raw verdict on one text: what the result cache stores."""

    label: str
    score: float = Field(description="Probability of the risk label(s) of the riskiest window, adjusted for the "
                                     "number of windows (see CatalogEntry.window_penalty)")
    windows: int
    truncated: bool


class Allowlist(BaseModel):
    """Texts never flagged: exact strings, or regular expressions matched with `re.search`."""

    exact: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)


class ScanOptions(BaseModel):
    """What a job asks of the scanners. Travels with every batch."""

    model_config = ConfigDict(frozen=True)

    scanners: tuple[str, ...] = DEFAULT_SCANNERS
    variant: Variant = Variant.int8
    mode: HybridMode = HybridMode.hybrid
    thresholds: dict[str, float] = Field(default_factory=dict)
    allowlist: Allowlist = Field(default_factory=Allowlist)
    ml_rollout_percent: float = Field(default=100.0, ge=0.0, le=100.0)
    fallback_to_heuristic: bool = True


class ScannerResult(BaseModel):
    """One scanner's verdict on one text."""

    label: str
    score: float
    valid: bool
    method: DetectionMethod
    windows: int = 0
    truncated: bool = False
    threshold: float | None = None
    allowlisted: str | None = None
    heuristics: list[str] = Field(default_factory=list, description="Names of the heuristic rules that fired")


class TextResult(BaseModel):
    """Every scanner's verdict on one text, or the error that stopped it."""

    valid: bool = True
    risk_score: float = 0.0
    scanners: dict[str, ScannerResult] = Field(default_factory=dict)
    model: dict[str, ModelRef] = Field(default_factory=dict)
    cached: bool = False
    arm: str | None = None
    error: str | None = None


#: A TextResult as plain JSON data: what `model_dump(mode="json")` gives, key for key in the models' field order,
#: so that `pydantic_core.to_json` writes the model's JSON byte for byte. The producer keeps results in this form
#: (`detection.decide.assemble_fields`): building and serializing the models cost most of a cached row's time.
ResultFields = dict[str, Any]


def error_fields(message: str, arm: str | None = None) -> ResultFields:
    """The result of a row that could not be scanned, as JSON data."""
    return TextResult(valid=False, arm=arm, error=message).model_dump(mode="json")


class ScanBatch(BaseModel):
    """Payload of one `shield.scan_batch` task: a batch of texts of one job (never one text per task)."""

    job_id: str
    batch_index: int
    options: ScanOptions
    texts: list[str] = Field(max_length=MAX_BATCH_TEXTS)
    cache_checked: bool = Field(default=False, description="The producer already looked these texts up in the "
                                "cache (and counted the lookups): the worker's own lookup is not counted again")


class BatchOutcome(BaseModel):
    """What a worker pushes to the job's result list for one batch: results in the batch's order."""

    job_id: str
    batch_index: int
    results: list[TextResult]
    worker: str | None = None


class SplitSpec(BaseModel):
    """One split of a distributed scan: a whole input, or a byte range of an uncompressed local text/JSONL file
    that starts and ends at line boundaries (so its rows are whole lines, numbered from `first_line`)."""

    model_config = ConfigDict(frozen=True)

    index: int
    uri: str
    fmt: str
    start: int = 0
    end: int | None = Field(default=None, description="Byte offset the split stops before; None: to the end")
    first_line: int = 1
    part: str = Field(description="Name of the output part, e.g. part-00003.jsonl")


class ReadSpec(BaseModel):
    """How a split's records are read (the `scan` options of the same names)."""

    model_config = ConfigDict(frozen=True)

    text_field: str = "text"
    id_field: str | None = None
    csv_column: str | None = None


class ScanSplit(BaseModel):
    """Payload of one `shield.scan_split` task."""

    job_id: str
    plan_id: str = Field(description="The manifest's plan id: a split of a replanned (--overwrite) job is dropped")
    split: SplitSpec
    read: ReadSpec
    options: ScanOptions
    output: str = Field(description="Folder or s3://bucket/prefix/ the parts and markers go to")
    batch_size: int = Field(ge=1, le=MAX_BATCH_TEXTS)


class PartDone(BaseModel):
    """The marker a worker writes after a split's part: the part is complete exactly when its marker exists."""

    index: int
    part: str
    rows: int
    flagged: int
    errors: int
    scan_errors: int
    first_scan_error: str | None = None
    model_rows: int = 0
    cache_hits: int = 0
    bytes: int
    sha256: str
    worker: str
    seconds: float


class SplitOutcome(BaseModel):
    """What a worker pushes to the job's result list when a split is finished (or could not be)."""

    job_id: str
    index: int
    done: PartDone | None = None
    error: str | None = None


class RowIdentity(BaseModel):
    """Where an output row's input came from."""

    id: str
    source: dict[str, Any]


class OutputRow(TextResult, RowIdentity):
    """One line of `llm-shield scan` output: `id` and `source` first, then the result's fields."""


def _tagged(tag: str, value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    # tag, length and value: no two distinct field tuples can encode to the same bytes
    return b"%s:%d:%s;" % (tag.encode(), len(data), data)


def _window_tag(window: WindowConfig) -> str:
    tag = f"{window.max_length}/{window.stride}/{window.max_windows}"
    # models without aggregation keep the keys they always had
    return tag if not window.window_penalty else f"{tag}/penalty={window.window_penalty!r}"


@lru_cache(maxsize=256)
def _key_prefix(scanner: str, model: ModelRef, window: WindowConfig) -> "hashlib._Hash":
    h = hashlib.sha256()
    for tag, value in (("schema", str(CACHE_SCHEMA_VERSION)), ("scanner", scanner), ("model", model.sha256),
                       ("variant", model.variant.value),
                       ("window", _window_tag(window))):
        h.update(_tagged(tag, value))
    return h


def ml_cache_key(scanner: str, model: ModelRef, window: WindowConfig, text: str) -> bytes:
    """Raw sha256 over a field-tagged encoding of everything that determines a model's output:
    cache schema version, scanner, model sha256, variant, window settings, and the text."""
    return ml_cache_keys(scanner, model, window, [text])[0]


def ml_cache_keys(scanner: str, model: ModelRef, window: WindowConfig, texts: Iterable[str]) -> list[bytes]:
    """`ml_cache_key` of each text."""
    prefix = _key_prefix(scanner, model, window)  # the fixed fields are hashed once per model
    keys = []
    for text in texts:
        h = prefix.copy()
        h.update(_tagged("text", text))
        keys.append(h.digest())
    return keys


def job_results_key(job_id: str) -> str:
    """Redis list a job's batch outcomes are pushed to (one entry per batch, expired after the job)."""
    return f"{KEY_PREFIX}:job:{job_id}:results"


def deliveries_key(job_id: str, batch_index: int) -> str:
    """Counter of how many times a batch was delivered to a worker."""
    return f"{KEY_PREFIX}:job:{job_id}:deliveries:{batch_index}"


def served_models_key(variant: Variant | str) -> str:
    """Hash of scanner -> ServedModel JSON that the workers of a variant publish at start."""
    return f"{KEY_PREFIX}:models:{Variant(variant).value}"


class ServedModel(BaseModel):
    """What a worker tells producers about a model it serves, so they can look results up in the cache."""

    model: ModelRef
    window: WindowConfig
    threshold: float
    labels: list[str]
    risk_labels: list[str] = Field(default_factory=list, description="Labels whose probability is the risk score "
                                   "(empty from workers of earlier releases)")


def decision_label(flagged: bool, labels: list[str], risk_labels: list[str], default: str) -> str:
    """The label that says a decision: the first risk label when flagged, else the first other label (`default`
    when every label is a risk label)."""
    if flagged:
        return risk_labels[0]
    return next((label for label in labels if label not in risk_labels), default)


def live_workers_key(variant: Variant | str) -> str:
    """Sorted set of `host:pid` of the pool processes serving a variant, scored by their last heartbeat (Redis
    server time, seconds); see `llm_shield.liveness`."""
    return f"{KEY_PREFIX}:workers:{Variant(variant).value}:live"


def live_nodes_key(variant: Variant | str) -> str:
    """Sorted set of `host:pid` of the worker nodes (the parents that receive messages) serving a variant."""
    return f"{KEY_PREFIX}:workers:{Variant(variant).value}:nodes"


def claims_key(job_id: str) -> str:
    """Hash of batch index -> `host:pid` of the worker node that received the batch last."""
    return f"{KEY_PREFIX}:job:{job_id}:claims"


def cancelled_key(job_id: str) -> str:
    """Set when a job is interrupted: workers drop its batches instead of scanning them."""
    return f"{KEY_PREFIX}:job:{job_id}:cancelled"
