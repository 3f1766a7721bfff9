"""Operating points: thresholds for a target false-positive rate, the window penalty, the adjusted score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llm_shield import calibration
from llm_shield.worker.inference import window_adjusted


def test_threshold_flags_at_most_the_target_share_of_benign_scores() -> None:
    rng = np.random.default_rng(0)
    benign = rng.random(10_000)
    for target in (0.0, 0.001, 0.01, 0.05, 0.2):
        t = calibration.threshold_for_fpr(benign, target)
        flagged = (benign >= t).mean()
        assert flagged <= target
        assert flagged >= target - 2 / len(benign)  # and not needlessly strict


def test_threshold_with_ties_never_exceeds_the_target() -> None:
    benign = np.array([0.9] * 50 + [0.1] * 950)
    t = calibration.threshold_for_fpr(benign, 0.01)
    assert (benign >= t).mean() <= 0.01 and t > 0.9


def test_threshold_rejects_empty_or_bad_targets() -> None:
    with pytest.raises(ValueError):
        calibration.threshold_for_fpr([], 0.01)
    with pytest.raises(ValueError):
        calibration.threshold_for_fpr([0.1, 0.2], 1.5)


def test_tradeoff_reports_recall_on_attacks() -> None:
    benign = np.linspace(0, 0.5, 1000)
    attacks = np.array([0.2, 0.6, 0.9, 0.95])
    rows = calibration.tradeoff(benign, attacks, [0.01, 0.7])
    assert rows[0]["fpr"] <= 0.01 and rows[0]["recall"] == 0.75
    assert rows[1]["fpr"] <= 0.7 and rows[1]["recall"] == 1.0


def _benign_max_logits(rng: np.random.Generator, windows: np.ndarray, scale: float) -> np.ndarray:
    """Max over n windows of logits with an exponential upper tail of the given scale."""
    return np.array([(rng.exponential(scale, n) - 6.0).max() for n in windows])


def test_window_penalty_equalises_false_positives_across_lengths() -> None:
    rng = np.random.default_rng(1)
    windows = np.array([1] * 3000 + [3] * 3000 + [6] * 3000 + [12] * 3000)
    logits = _benign_max_logits(rng, windows, scale=1.0)
    penalty = calibration.fit_window_penalty(logits, windows, 0.01)
    assert 0.5 <= penalty <= 1.5  # the tail's scale is 1: ln(n) logits per length doubling e-fold
    z = calibration.adjusted_logits(logits, windows, penalty)
    t = calibration.threshold_for_fpr(z, 0.01)
    per_length = [(z[windows == n] >= t).mean() for n in (1, 3, 6, 12)]
    plain_t = calibration.threshold_for_fpr(logits, 0.01)
    plain = [(logits[windows == n] >= plain_t).mean() for n in (1, 3, 6, 12)]
    assert max(per_length) < max(plain)  # the plain max flags the long texts far more often
    assert max(per_length) <= 0.02


def test_no_penalty_when_lengths_do_not_matter() -> None:
    rng = np.random.default_rng(2)
    windows = np.array([1] * 2000 + [8] * 2000)
    logits = rng.normal(-5, 1, len(windows))  # the same distribution whatever the length
    assert calibration.fit_window_penalty(logits, windows, 0.01) <= 0.25


def test_window_adjusted_score_matches_the_calibration_formula() -> None:
    for p, n, penalty in ((0.9, 1, 1.0), (0.99, 8, 0.75), (0.5, 20, 2.0), (0.999999, 3, 0.0)):
        expected = float(calibration.sigmoid(calibration.adjusted_logits(
            np.array([math.log(p / (1 - p))]), np.array([n]), penalty))[0])
        assert window_adjusted(p, n, penalty) == pytest.approx(expected, rel=1e-9)
    assert window_adjusted(0.7, 1, 3.0) == 0.7  # one window: nothing to adjust
