"""Turning heuristic verdicts and model scores into results, mode by mode.

Workers and producer share this code: the producer can finish a row itself when every model score it
needs is already in the cache, and both then give the same answer.

A result is built as plain JSON data (`assemble_fields`, a `contract.ResultFields`), which the producer keeps and
writes as it is; workers validate it into a `TextResult` (`assemble`).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any, NamedTuple

from llm_shield.config import DetectionMethod, HybridMode
from llm_shield.contract import (
    HEURISTIC_SCANNERS,
    ML_SCANNERS,
    Allowlist,
    MLScore,
    ModelRef,
    ResultFields,
    ScanOptions,
    ServedModel,
    TextResult,
    decision_label,
    error_fields,
)
from llm_shield.detection.heuristics import CONFIDENT, HEURISTICS, HeuristicVerdict

ARM_ML = "ml"
ARM_HEURISTIC = "heuristic"
#: Threshold of heuristic-only scanners (their scores are rule confidences).
HEURISTIC_THRESHOLD = 0.5


def rollout_arm(text: str, percent: float) -> str | None:
    """The A/B arm of a row, from a hash of its text so reruns agree; None when no rollout is configured."""
    if percent >= 100.0:
        return None
    bucket = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:4], "big") % 10_000
    return ARM_ML if bucket < percent * 100 else ARM_HEURISTIC


def effective_mode(options: ScanOptions, arm: str | None) -> HybridMode:
    return HybridMode.heuristic_only if arm == ARM_HEURISTIC else options.mode


@lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in patterns]


def allowlisted(text: str, allow: Allowlist) -> str | None:
    """The allowlist entry that matches `text`, if any."""
    if text in allow.exact:
        return "exact"
    for pattern in _compiled(tuple(allow.patterns)):
        if pattern.search(text):
            return pattern.pattern
    return None


class TextPlan(NamedTuple):
    """What one text needs: its arm, its heuristic verdicts, and the ML scanners that must run on it."""

    arm: str | None
    heuristics: dict[str, HeuristicVerdict]
    needs_ml: tuple[str, ...]


def plan_text(text: str, options: ScanOptions) -> TextPlan:
    arm = rollout_arm(text, options.ml_rollout_percent)
    mode = effective_mode(options, arm)
    verdicts = {name: HEURISTICS[name](text) for name in options.scanners}
    needs: list[str] = []
    for name in options.scanners:
        if name not in ML_SCANNERS or mode is HybridMode.heuristic_only:
            continue
        if mode is HybridMode.hybrid and verdicts[name].score >= CONFIDENT:
            continue  # a confident heuristic decides at once
        needs.append(name)
    return TextPlan(arm, verdicts, tuple(needs))


def _scanner_fields(label: str, score: float, valid: bool, method: DetectionMethod, threshold: float,
                    rules: tuple[str, ...], windows: int = 0, truncated: bool = False) -> dict[str, Any]:
    """A `ScannerResult` as JSON data, key for key in the model's order."""
    return {"label": label, "score": score, "valid": valid, "method": method.value, "windows": windows,
            "truncated": truncated, "threshold": threshold, "allowlisted": None, "heuristics": list(rules)}


def _heuristic_result(verdict: HeuristicVerdict, method: DetectionMethod, threshold: float) -> dict[str, Any]:
    flagged = verdict.score >= threshold
    return _scanner_fields("FLAGGED" if flagged else "CLEAN", verdict.score, not flagged, method, threshold,
                           verdict.rules)


def verdict_label(ml: MLScore, flagged: bool, served: ServedModel | None) -> str:
    """The model's label that agrees with the decision. `ml.label` is the model's own argmax (a 0.5 cut), while the
    decision uses the calibrated threshold: a score between the two must not read "INJECTION" on a text that
    was not flagged (or "SAFE" on one that was)."""
    if served is None or not served.risk_labels or (ml.label in served.risk_labels) == flagged:
        return ml.label
    return decision_label(flagged, served.labels, served.risk_labels, ml.label)


def decide_scanner(
    name: str,
    mode: HybridMode,
    verdict: HeuristicVerdict,
    ml: MLScore | None,
    served: ServedModel | None,
    ml_error: str | None,
    options: ScanOptions,
) -> dict[str, Any]:
    """One scanner's result under `mode`, as `ScannerResult` JSON data. `ml` is None when the model did not run
    (not needed, or failed)."""
    ml_threshold = options.thresholds.get(name, served.threshold if served else 0.5)
    h_threshold = options.thresholds.get(name, HEURISTIC_THRESHOLD)
    if name in HEURISTIC_SCANNERS or mode is HybridMode.heuristic_only:
        return _heuristic_result(verdict, DetectionMethod.heuristic, h_threshold)
    if mode is HybridMode.hybrid and verdict.score >= CONFIDENT:
        return _heuristic_result(verdict, DetectionMethod.heuristic_short_circuit, h_threshold)
    if ml is None:
        if options.fallback_to_heuristic:
            return _heuristic_result(verdict, DetectionMethod.ml_fallback_to_heuristic, h_threshold)
        raise ScannerFailed(f"{name}: model unavailable ({ml_error or 'no worker served it'})")
    if mode is HybridMode.both:
        score = max(ml.score, verdict.score)
        flagged = ml.score >= ml_threshold or verdict.score >= h_threshold
        label = verdict_label(ml, flagged, served)
        return _scanner_fields(label if ml.score >= verdict.score else ("FLAGGED" if flagged else label),
                               round(score, 6), not flagged, DetectionMethod.hybrid_both, ml_threshold,
                               verdict.rules, ml.windows, ml.truncated)
    flagged = ml.score >= ml_threshold
    return _scanner_fields(verdict_label(ml, flagged, served), ml.score, not flagged, DetectionMethod.ml, ml_threshold,
                           verdict.rules, ml.windows, ml.truncated)


class ScannerFailed(Exception):
    """A scanner could not give a verdict and may not fall back: the row becomes an error row."""


def _model_fields(model: ModelRef) -> dict[str, Any]:
    """A `ModelRef` as JSON data, key for key in the model's order."""
    return {"id": model.id, "variant": model.variant.value, "sha256": model.sha256}


def assemble_fields(
    text: str,
    options: ScanOptions,
    plan: TextPlan,
    ml_scores: dict[str, MLScore],
    served: dict[str, ServedModel],
    ml_errors: dict[str, str],
    cached: bool,
) -> ResultFields:
    """The full result of one text from its plan and whatever model scores were obtained, as JSON data."""
    mode = effective_mode(options, plan.arm)
    allowed_by = allowlisted(text, options.allowlist)
    scanners: dict[str, dict[str, Any]] = {}
    valid, scored = True, []  # scored: the risk scores of the verdicts no allowlist entry overrode
    try:
        for name in options.scanners:
            result = decide_scanner(name, mode, plan.heuristics[name], ml_scores.get(name), served.get(name),
                                    ml_errors.get(name), options)
            if not result["valid"]:
                if allowed_by is None:
                    valid = False
                else:
                    result["valid"], result["allowlisted"] = True, allowed_by
            if result["allowlisted"] is None:
                scored.append(result["score"])
            scanners[name] = result
    except ScannerFailed as exc:
        return error_fields(str(exc), arm=plan.arm)
    models = {n: _model_fields(served[n].model) for n in options.scanners if n in ml_scores and n in served}
    return {"valid": valid, "risk_score": round(max(scored, default=0.0), 6), "scanners": scanners,
            "model": models, "cached": cached, "arm": plan.arm, "error": None}


def assemble(
    text: str,
    options: ScanOptions,
    plan: TextPlan,
    ml_scores: dict[str, MLScore],
    served: dict[str, ServedModel],
    ml_errors: dict[str, str],
    cached: bool,
) -> TextResult:
    """`assemble_fields` as a `TextResult`."""
    return TextResult.model_validate(assemble_fields(text, options, plan, ml_scores, served, ml_errors, cached))
