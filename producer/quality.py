"""Measuring verdicts on the user's own data: `llm-shield eval` (labelled texts) and `llm-shield models calibrate`
(benign traffic, optionally attacks). Both scan through the same workers and cache as `llm-shield scan`."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llm_shield import calibration
from llm_shield.config import HybridMode, Variant
from llm_shield.contract import ML_SCANNERS, OutputRow
from llm_shield.errors import ConfigError
from llm_shield.settings import ShieldSettings

#: Labels read as "this text is an attack / the risk" (case-insensitive) unless --positive says otherwise.
DEFAULT_POSITIVE = ("injection", "toxic", "negative", "jailbreak", "malicious", "attack", "unsafe", "1", "true",
                    "yes", "positive_risk")
#: Character-length buckets of the report (lower bounds).
LENGTH_BUCKETS = (0, 128, 512, 1024, 4096)


@dataclass(frozen=True)
class LabelledText:
    text: str
    positive: bool
    kind: str | None


def _rows(path: Path) -> Iterable[dict]:
    """Rows of a JSONL or CSV file (either may be gzipped)."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    try:
        raw = gzip.open(path, "rb").read() if path.name.endswith(".gz") else path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    text = raw.decode("utf-8", errors="replace")
    if name.endswith((".csv", ".tsv")):
        yield from csv.DictReader(io.StringIO(text), delimiter="\t" if name.endswith(".tsv") else ",")
        return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ConfigError(f"{path}:{n}: not valid JSON (labelled files are JSONL or CSV)") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{n}: expected a JSON object")
        yield row


def read_labelled(paths: Sequence[Path], text_field: str = "text", label_field: str = "label",
                  kind_field: str | None = "kind", positive: Sequence[str] = DEFAULT_POSITIVE) -> list[LabelledText]:
    """Labelled texts from JSONL/CSV files; a row without a text or label is an error (one line)."""
    wanted = {p.lower() for p in positive}
    out: list[LabelledText] = []
    for path in paths:
        for n, row in enumerate(_rows(path), 1):
            text, label = row.get(text_field), row.get(label_field)
            if not isinstance(text, str):
                raise ConfigError(f"{path}: row {n} has no string field {text_field!r} (set --text-field)")
            if label is None:
                raise ConfigError(f"{path}: row {n} has no field {label_field!r} (set --label-field)")
            kind = row.get(kind_field) if kind_field else None
            out.append(LabelledText(text, str(label).strip().lower() in wanted,
                                    None if kind is None else str(kind)))
    if not out:
        raise ConfigError("no labelled rows in " + ", ".join(map(str, paths)))
    return out


def read_texts(paths: Sequence[str], text_field: str, fmt: str | None, settings: ShieldSettings) -> list[str]:
    """Texts of any input `llm-shield scan` reads; rows that are error rows there (no text) are left out of the sample."""
    from llm_shield.producer.readers import iter_records

    return [r.text for r in iter_records(list(paths), fmt=fmt, text_field=text_field,
                                         max_text_chars=settings.max_text_chars) if r.text is not None]


def scan_texts(texts: Sequence[str], scanners: Sequence[str], variant: Variant, mode: HybridMode,
               settings: ShieldSettings, broker: str | None, thresholds: dict[str, float] | None = None) -> list[OutputRow]:
    from llm_shield.producer.api import Scanner

    with Scanner(scanners=scanners, variant=variant, mode=mode, thresholds=thresholds, broker=broker,
                 settings=settings) as scanner:
        return list(scanner.scan(texts))


# -- eval -----------------------------------------------------------------------------------------
@dataclass
class Counts:
    positives: int = 0
    negatives: int = 0
    tp: int = 0
    fp: int = 0
    errors: int = 0

    def add(self, positive: bool, flagged: bool) -> None:
        if positive:
            self.positives += 1
            self.tp += flagged
        else:
            self.negatives += 1
            self.fp += flagged

    def metrics(self) -> dict[str, float | int | None]:
        flagged = self.tp + self.fp
        precision = self.tp / flagged if flagged else None
        recall = self.tp / self.positives if self.positives else None
        f1 = (2 * precision * recall / (precision + recall)
              if precision is not None and recall is not None and precision + recall else None)
        fpr = self.fp / self.negatives if self.negatives else None
        return {"rows": self.positives + self.negatives, "positives": self.positives, "negatives": self.negatives,
                "precision": precision, "recall": recall, "f1": f1, "fpr": fpr, "errors": self.errors}


@dataclass
class EvalReport:
    scanner: str
    overall: Counts = field(default_factory=Counts)
    by_kind: dict[str, Counts] = field(default_factory=dict)
    by_length: dict[str, Counts] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"scanner": self.scanner, "overall": self.overall.metrics(),
                "by_kind": {k: c.metrics() for k, c in sorted(self.by_kind.items())},
                "by_length": {k: c.metrics() for k, c in self.by_length.items()}}


def length_bucket(text: str) -> str:
    low = max(b for b in LENGTH_BUCKETS if len(text) >= b)
    i = LENGTH_BUCKETS.index(low)
    return f"{low}+" if i == len(LENGTH_BUCKETS) - 1 else f"{low}-{LENGTH_BUCKETS[i + 1]}"


def evaluate(rows: Sequence[LabelledText], results: Sequence[OutputRow], scanner: str) -> EvalReport:
    """Counts overall, by kind and by length bucket; a row the scanner could not score counts as an error
    (and as not flagged)."""
    report = EvalReport(scanner)
    for b in LENGTH_BUCKETS:
        report.by_length[length_bucket("x" * b)] = Counts()
    for row, result in zip(rows, results, strict=True):
        verdict = result.scanners.get(scanner)
        flagged = verdict is not None and not verdict.valid
        groups = [report.overall, report.by_length[length_bucket(row.text)]]
        if row.kind is not None:
            groups.append(report.by_kind.setdefault(row.kind, Counts()))
        for counts in groups:
            if result.error or verdict is None:
                counts.errors += 1
            counts.add(row.positive, flagged)
    report.by_length = {k: c for k, c in report.by_length.items() if c.positives + c.negatives}
    return report


def format_report(report: EvalReport) -> str:
    def cell(value: float | int | None, pct: bool = False) -> str:
        if value is None:
            return "-"
        return f"{100 * value:.1f}%" if pct else (f"{value:.3f}" if isinstance(value, float) else str(value))

    lines = [f"{'group':<28}{'rows':>7}{'attacks':>8}{'benign':>8}{'precision':>10}{'recall':>8}{'F1':>7}"
             f"{'FPR':>8}{'errors':>8}"]

    def add(name: str, counts: Counts) -> None:
        m = counts.metrics()
        lines.append(f"{name[:27]:<28}{m['rows']:>7}{m['positives']:>8}{m['negatives']:>8}{cell(m['precision']):>10}"
                     f"{cell(m['recall']):>8}{cell(m['f1']):>7}{cell(m['fpr'], True):>8}{m['errors']:>8}")

    add(f"all ({report.scanner})", report.overall)
    for name, counts in sorted(report.by_kind.items()):
        add(f"kind={name}", counts)
    for name, counts in report.by_length.items():
        add(f"chars {name}", counts)
    return "\n".join(lines)


# -- calibrate ------------------------------------------------------------------------------------
def ml_scores(results: Sequence[OutputRow], scanner: str) -> np.ndarray:
    """The model's score of every row that has one (rows the model did not score are left out)."""
    return np.array([r.scanners[scanner].score for r in results
                     if not r.error and scanner in r.scanners and r.scanners[scanner].method.value == "ml"])


def check_ml_scanners(scanners: Sequence[str]) -> None:
    bad = [s for s in scanners if s not in ML_SCANNERS]
    if bad:
        raise ConfigError(f"only ML scanners have thresholds to calibrate ({', '.join(ML_SCANNERS)}), not {bad}")


def format_tradeoff(scanner: str, rows: list[dict[str, float]]) -> str:
    lines = [f"{scanner}: {'target FPR':>10}  {'threshold':>10}  {'FPR':>7}  {'recall':>7}"]
    for r in rows:
        recall = "-" if np.isnan(r["recall"]) else f"{100 * r['recall']:.1f}%"
        lines.append(f"{'':<{len(scanner) + 2}}{100 * r['target_fpr']:>9.2f}%  {r['threshold']:>10.6f}  "
                     f"{100 * r['fpr']:>6.2f}%  {recall:>7}")
    return "\n".join(lines)


TRADEOFF_TARGETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


def tradeoff_rows(benign: np.ndarray, attacks: np.ndarray | None, target: float) -> list[dict[str, float]]:
    targets = sorted(set(TRADEOFF_TARGETS) | {target})
    return calibration.tradeoff(benign, attacks, targets)
