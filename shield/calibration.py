"""Operating points from scores: thresholds for a target false-positive rate, trade-off tables, window penalty.

Numpy only: used when a model is trained (the default thresholds) and by `llm-shield models calibrate` (a user's
own traffic), so producer-side installs can run it without onnxruntime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Default target: at most 1 benign text in 100 flagged.
DEFAULT_TARGET_FPR = 0.01
#: Window-count buckets over which the penalty is balanced (lower bounds).
WINDOW_BUCKETS = (1, 2, 4, 8)


def threshold_for_fpr(benign_scores: Sequence[float] | np.ndarray, target_fpr: float) -> float:
    """A threshold (flag when score >= threshold) that flags at most `target_fpr` of `benign_scores`: halfway
    between the highest benign score that must stay below it and the lowest one allowed above it, so that the
    small jitter of a rescan (int8 scores move by ~1e-3 with their batch companions) does not flip the texts at
    the boundary."""
    scores = np.sort(np.asarray(benign_scores, dtype=np.float64))[::-1]
    if not len(scores):
        raise ValueError("no benign scores to calibrate on")
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target false-positive rate must be in [0, 1), got {target_fpr}")
    allowed = int(math.floor(target_fpr * len(scores) + 1e-9))  # benign texts that may be flagged
    boundary = scores[allowed]  # the highest score that must stay below the threshold
    threshold = float(np.nextafter(boundary, np.inf))
    if allowed and scores[allowed - 1] > boundary:
        threshold = max(threshold, float((boundary + scores[allowed - 1]) / 2))
    return threshold


def rate(scores: np.ndarray, threshold: float) -> float:
    return float((np.asarray(scores) >= threshold).mean()) if len(scores) else float("nan")


def tradeoff(benign: np.ndarray, attacks: np.ndarray | None, targets: Sequence[float]) -> list[dict[str, float]]:
    """Rows of (target_fpr, threshold, fpr on benign, recall on attacks or nan)."""
    rows = []
    for target in targets:
        t = threshold_for_fpr(benign, target)
        rows.append({"target_fpr": target, "threshold": t, "fpr": rate(benign, t),
                     "recall": rate(attacks, t) if attacks is not None and len(attacks) else float("nan")})
    return rows


def adjusted_logits(best_logits: np.ndarray, windows: np.ndarray, penalty: float) -> np.ndarray:
    return np.asarray(best_logits, dtype=np.float64) - penalty * np.log(np.maximum(np.asarray(windows), 1))


def bucket_of(windows: int) -> int:
    return max(b for b in WINDOW_BUCKETS if windows >= b)


def fit_window_penalty(best_logits: np.ndarray, windows: np.ndarray, target_fpr: float,
                       grid: Sequence[float] = tuple(np.round(np.arange(0.0, 4.01, 0.25), 2)),
                       tolerance: float = 1.25) -> float:
    """The smallest penalty (logits per ln(windows)) at which benign texts of more windows are flagged no more often
    than single-window ones, at the threshold for `target_fpr`: every longer bucket's false-positive rate stays within
    `tolerance` x the larger of the single-window rate and the target (sampling noise). The smallest, because every
    extra logit of penalty costs recall on long texts with one injection inside."""
    windows = np.asarray(windows)
    buckets = np.array([bucket_of(int(w)) for w in windows])
    present = [b for b in WINDOW_BUCKETS if b > 1 and (buckets == b).sum() >= 50]
    for penalty in grid:
        z = adjusted_logits(best_logits, windows, penalty)
        t = threshold_for_fpr(z, target_fpr)
        single = rate(z[buckets == 1], t) if (buckets == 1).any() else target_fpr
        allowed = max(single, target_fpr) * tolerance
        if all(rate(z[buckets == b], t) <= allowed for b in present):
            return float(penalty)
    return float(grid[-1])


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -700, 700)))
