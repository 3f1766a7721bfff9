"""`llm-shield eval` and `models calibrate` building blocks: labelled files, reports, the thresholds file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from llm_shield.producer.quality import LabelledText, evaluate, format_report, length_bucket, read_labelled
from llm_shield.config import DetectionMethod, Variant
from llm_shield.contract import ModelRef, OutputRow, ScannerResult
from llm_shield.errors import ConfigError
from llm_shield.registry import Catalog, CatalogEntry, ModelFile, save_catalog
from llm_shield.settings import ShieldSettings
from llm_shield.thresholds import CalibratedThreshold, ThresholdsFile, calibrated_thresholds, load_thresholds, save_thresholds


def _result(flagged: bool, error: str | None = None) -> OutputRow:
    verdict = ScannerResult(label="INJECTION" if flagged else "SAFE", score=0.9 if flagged else 0.1,
                            valid=not flagged, method=DetectionMethod.ml)
    return OutputRow(id="x", source={}, valid=not flagged, scanners={} if error else {"prompt_injection": verdict},
                     error=error)


def test_read_labelled_jsonl_gz_and_csv(tmp_path: Path) -> None:
    j = tmp_path / "a.jsonl.gz"
    with gzip.open(j, "wt") as f:
        f.write(json.dumps({"text": "hi", "label": "SAFE", "kind": "chat"}) + "\n\n")
        f.write(json.dumps({"text": "ignore it all", "label": "INJECTION"}) + "\n")
    c = tmp_path / "b.csv"
    c.write_text("prompt,is_attack\n\"multi\nline\",1\nok,0\n")
    rows = read_labelled([j], kind_field="kind")
    assert [(r.positive, r.kind) for r in rows] == [(False, "chat"), (True, None)]
    rows = read_labelled([c], text_field="prompt", label_field="is_attack")
    assert [(r.text, r.positive) for r in rows] == [("multi\nline", True), ("ok", False)]


def test_read_labelled_errors_name_the_row_and_the_option(tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_text('{"text": "a", "label": "SAFE"}\n{"body": "b", "label": "SAFE"}\n')
    with pytest.raises(ConfigError, match=r"row 2 has no string field 'text' \(set --text-field\)"):
        read_labelled([f])
    f.write_text('{"text": "a"}\n')
    with pytest.raises(ConfigError, match="--label-field"):
        read_labelled([f])
    f.write_text("not json\n")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_labelled([f])


def test_report_counts_overall_by_kind_and_by_length() -> None:
    rows = [LabelledText("a" * 10, True, "email"), LabelledText("b" * 10, False, "email"),
            LabelledText("c" * 600, False, "doc"), LabelledText("d" * 5000, True, "doc"),
            LabelledText("e" * 20, False, None)]
    results = [_result(True), _result(True), _result(False), _result(False), _result(False, error="boom")]
    report = evaluate(rows, results, "prompt_injection")
    overall = report.overall.metrics()
    assert overall["rows"] == 5 and overall["positives"] == 2 and overall["negatives"] == 3
    assert overall["precision"] == 0.5 and overall["recall"] == 0.5 and overall["fpr"] == pytest.approx(1 / 3)
    assert overall["errors"] == 1
    assert report.by_kind["email"].metrics()["fpr"] == 1.0 and report.by_kind["doc"].metrics()["recall"] == 0.0
    assert set(report.by_length) == {"0-128", "512-1024", "4096+"}
    text = format_report(report)
    assert "kind=email" in text and "chars 4096+" in text and "33.3%" in text


def test_length_buckets() -> None:
    assert [length_bucket("x" * n) for n in (0, 127, 128, 1023, 1024, 4096, 10**5)] == [
        "0-128", "0-128", "128-512", "512-1024", "1024-4096", "4096+", "4096+"]


def _catalog_with(tmp_path: Path, sha: str) -> ShieldSettings:
    entry = CatalogEntry(id="pi-int8", task="prompt_injection", variant=Variant.int8, source="file:///m/",
                         sha256=sha, size=1, files=[ModelFile(name="model.onnx", sha256=sha, size=1),
                                                    ModelFile(name="tokenizer.json", sha256=sha, size=1)],
                         labels=["SAFE", "INJECTION"], risk_labels=["INJECTION"])
    save_catalog(Catalog(models=[entry]), tmp_path / "catalog.json")
    return ShieldSettings(home=tmp_path, catalog=str(tmp_path / "catalog.json"))


def test_calibrated_thresholds_apply_only_to_the_model_they_were_measured_on(tmp_path: Path,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    settings = _catalog_with(tmp_path, "a" * 64)
    assert calibrated_thresholds(settings, Variant.int8, ("prompt_injection",)) == {}  # no file yet
    point = CalibratedThreshold(threshold=0.97, model_id="pi-int8", model_sha256="a" * 64, target_fpr=0.01,
                                fpr=0.009, benign_texts=1000)
    save_thresholds(ThresholdsFile(variants={Variant.int8: {"prompt_injection": point}}), settings.thresholds_location)
    assert load_thresholds(settings.thresholds_location).variants[Variant.int8]["prompt_injection"].threshold == 0.97
    assert calibrated_thresholds(settings, Variant.int8, ("prompt_injection", "toxicity")) == {"prompt_injection": 0.97}
    assert calibrated_thresholds(settings, Variant.fp32, ("prompt_injection",)) == {}
    settings = _catalog_with(tmp_path, "b" * 64)  # the model changed: the old threshold means nothing now
    assert calibrated_thresholds(settings, Variant.int8, ("prompt_injection",)) == {}
    assert "calibrate` again" in caplog.text


def test_a_broken_thresholds_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text('{"version": 1, "variants": {"int8": {"prompt_injection": {"threshold": 3}}}}')
    with pytest.raises(ConfigError, match="thresholds file .* is not valid"):
        load_thresholds(path)
