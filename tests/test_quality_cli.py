"""`llm-shield eval` and `llm-shield models calibrate` end to end: embedded Redis, real workers, real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_scan import cli, rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
HAND_TEST = REPO / "data" / "prompt_injection" / "test.jsonl"


def _split(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    labelled = [json.loads(line) for line in HAND_TEST.read_text().splitlines()]
    benign, attacks = tmp_path / "benign.jsonl", tmp_path / "attacks.jsonl"
    benign.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in labelled if r["label"] == "SAFE"))
    attacks.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in labelled if r["label"] != "SAFE"))
    return benign, attacks, labelled


def test_eval_reports_overall_by_kind_and_by_length(model_env: dict[str, str], tmp_path: Path) -> None:
    labelled = [json.loads(line) for line in HAND_TEST.read_text().splitlines()][:120]
    f = tmp_path / "labelled.jsonl"
    f.write_text("".join(json.dumps({"prompt": r["text"], "y": r["label"], "kind": r["category"]}) + "\n"
                         for r in labelled))
    report = tmp_path / "report.json"
    done = cli("eval", str(f), "--text-field", "prompt", "--label-field", "y", "--json", str(report), env=model_env)
    assert done.returncode == 0, done.stderr
    assert "all (prompt_injection)" in done.stdout and "kind=direct_override" in done.stdout
    assert "chars 0-128" in done.stdout
    data = json.loads(report.read_text())
    positives = sum(r["label"] == "INJECTION" for r in labelled)
    assert data["overall"]["rows"] == len(labelled) and data["overall"]["positives"] == positives
    assert data["overall"]["recall"] > 0.5 and data["overall"]["errors"] == 0
    assert sum(v["rows"] for v in data["by_kind"].values()) == len(labelled)


def test_eval_refuses_a_file_without_labels(model_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "nolabel.jsonl"
    f.write_text('{"text": "hello"}\n')
    done = cli("eval", str(f), env=model_env)
    assert done.returncode == 2 and done.stderr.strip().startswith("error:") and "--label-field" in done.stderr
    assert "Traceback" not in done.stderr


def test_calibrate_writes_thresholds_that_later_scans_use(model_env: dict[str, str], tmp_path: Path) -> None:
    benign, attacks, _ = _split(tmp_path)
    thresholds = tmp_path / "thresholds.json"
    env = {**model_env, "SHIELD_THRESHOLDS_FILE": str(thresholds)}
    done = cli("models", "calibrate", str(benign), "--attacks", str(attacks), "--target-fpr", "0.05", env=env)
    assert done.returncode == 0, done.stderr
    assert "target FPR" in done.stdout and "recall" in done.stdout and "wrote" in done.stdout
    point = json.loads(thresholds.read_text())["variants"]["int8"]["prompt_injection"]
    assert point["target_fpr"] == 0.05 and point["fpr"] <= 0.05 and point["benign_texts"] >= 200
    assert point["attack_texts"] > 200 and 0 < point["recall"] <= 1
    out = tmp_path / "out.jsonl"
    done = cli("scan", str(benign), "-o", str(out), "--mode", "ml_only", "--no-progress", env=env)
    assert done.returncode == 0, done.stderr
    got = rows(out)
    assert {r["scanners"]["prompt_injection"]["threshold"] for r in got} == {point["threshold"]}
    texts = [json.loads(line)["text"] for line in benign.read_text().splitlines()]
    flagged = {t for t, r in zip(texts, got) if not r["valid"]}
    # the calibrated rate holds on the same texts, up to the int8 jitter of a text or two at the boundary (dynamic
    # quantization scales activations per run, so scores move a little with their batch companions)
    assert len(flagged) / len(set(texts)) <= 0.05 + 2 / len(set(texts))
    # an explicit --threshold still wins
    done = cli("scan", str(benign), "-o", str(out), "--overwrite", "--threshold", "prompt_injection=0.42",
               "--no-progress", env=env)
    assert done.returncode == 0, done.stderr
    assert {r["scanners"]["prompt_injection"]["threshold"] for r in rows(out)
            if r["scanners"]["prompt_injection"]["method"] == "ml"} == {0.42}


def test_calibrate_needs_enough_benign_texts(model_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "few.txt"
    f.write_text("hello\nthanks\n")
    done = cli("models", "calibrate", str(f), env={**model_env, "SHIELD_THRESHOLDS_FILE": str(tmp_path / "t.json")})
    assert done.returncode == 2 and "at least 100" in done.stderr and "Traceback" not in done.stderr
