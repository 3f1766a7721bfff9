"""Batched inference: windows sorted by length, batched by a token budget, scored, reduced per text."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from llm_shield.config import InferenceMetrics
from llm_shield.contract import MLScore, decision_label
from llm_shield.detection.deobfuscate import deobfuscate
from llm_shield.worker.loader import LoadedModel
from llm_shield.worker.tokenizer import Encoded, Window

#: Upper bound on windows per run, whatever the token budget allows.
MAX_BATCH_WINDOWS = 256
#: A run ends when its windows grow this much longer than its first (bucketing by length: padding is paid for).
BUCKET_GROWTH = 1.5
#: ...but not before it has this many windows (tiny runs waste more than the padding they save).
MIN_BUCKET_WINDOWS = 8
#: Padded tokens per run when SHIELD_MAX_BATCH_TOKENS is not set. On CPU, runs of ~1k tokens keep the
#: activations in cache: 1.25x the texts/s of 16k-token runs on short lines (README "Benchmarks"); a GPU
#: wants big runs.
CPU_BATCH_TOKENS = 1024
GPU_BATCH_TOKENS = 16384


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def window_adjusted(best_risk: float, windows: int, penalty: float) -> float:
    """A text's risk from its riskiest window: logit(best_risk) - penalty * ln(windows), back to a probability.

    With penalty 0 this is the plain max over windows. A benign text of n windows has n chances to score high;
    when benign window logits have an exponential upper tail of scale `penalty` (what the build fits on
    validation data), subtracting penalty * ln(n) gives every length the same false-positive rate.
    """
    if penalty <= 0.0 or windows <= 1:
        return best_risk
    p = min(max(best_risk, 1e-12), 1.0 - 1e-12)
    logit = math.log(p / (1.0 - p)) - penalty * math.log(windows)
    return 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0


def plan_batches(windows: Sequence[Window], max_batch_tokens: int, max_windows: int = MAX_BATCH_WINDOWS) -> list[list[int]]:
    """Window indices grouped into runs: sorted by length and bucketed so padding is small, each run within
    the budget of padded tokens (rows x longest row) and of `max_windows` rows."""
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].ids))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = len(windows[i].ids)  # the longest so far, since the order is ascending
        if current and ((len(current) + 1) * width > max_batch_tokens or len(current) >= max_windows
                        or (len(current) >= MIN_BUCKET_WINDOWS
                            and width > BUCKET_GROWTH * len(windows[current[0]].ids))):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class InferenceEngine:
    """Scores texts with one loaded model; long texts are scored window by window and the max decides."""

    def __init__(self, model: LoadedModel, max_batch_tokens: int | None = None, read_disguises: bool = True) -> None:
        self.model = model
        #: score disguised texts undisguised too (see `score`); off only to measure what that costs (bench/)
        self.read_disguises = read_disguises
        on_gpu = "CUDAExecutionProvider" in model.providers
        self.max_batch_tokens = max_batch_tokens or (GPU_BATCH_TOKENS if on_gpu else CPU_BATCH_TOKENS)
        self.metrics = InferenceMetrics()
        entry = model.entry
        self._risk = np.array([entry.labels.index(label) for label in entry.risk_labels])
        self._post = softmax if entry.postprocess == "softmax" else sigmoid

    def _label_for(self, score: float) -> str:
        """The label of a window-adjusted score: the (first) risk label above one half, else the other."""
        labels = self.model.entry.labels
        return decision_label(score >= 0.5, labels, self.model.entry.risk_labels, labels[0])

    def probabilities(self, windows: Sequence[Window]) -> np.ndarray:
        """Per-window label probabilities, rows in the order of `windows`."""
        out = np.zeros((len(windows), len(self.model.entry.labels)), dtype=np.float32)
        for batch in plan_batches(windows, self.max_batch_tokens):
            feeds = self.model.tokenizer.pad([windows[i] for i in batch])
            feeds = {k: v for k, v in feeds.items() if k in self.model.input_names}
            started = time.perf_counter()
            try:
                (logits,) = self.model.session.run(["logits"], feeds)
            except Exception:
                self.metrics.errors += 1
                raise
            finally:
                self.metrics.calls += 1
                self.metrics.total_inference_ms += (time.perf_counter() - started) * 1000
            out[batch] = self._post(logits.astype(np.float32))
        return out

    def score(self, texts: Sequence[str]) -> list[MLScore]:
        """One MLScore per text, in order.

        A text that wears a disguise (leetspeak, decorative letters, base64 or character escapes; see
        `detection.deobfuscate`) is scored twice, as written and undisguised, and the higher score counts: the
        undisguised form shows the model the words, the written one the disguise itself, which models trained
        on obfuscated attacks also recognise. Texts without a disguise (nearly all traffic) are scored once.
        """
        if not texts:
            return []
        texts = list(texts)
        plain: dict[int, str] = {}
        if self.read_disguises:
            words = self.model.tokenizer.words
            plain = {i: alt for i, t in enumerate(texts) if (alt := deobfuscate(t, words)) != t}
        encoded = self.model.tokenizer.encode(texts + list(plain.values()))
        scores = self._reduce(encoded)
        results = scores[: len(texts)]
        for i, alt in zip(plain, scores[len(texts):]):
            if alt.score > results[i].score:
                results[i] = alt.model_copy(update={"windows": results[i].windows, "truncated": results[i].truncated})
        self.metrics.texts += len(texts)
        return results

    def _reduce(self, encoded: Encoded) -> list[MLScore]:
        """One MLScore per encoded text: its riskiest window, adjusted for its number of windows."""
        probs = self.probabilities(encoded.windows)
        risk = probs[:, self._risk].sum(axis=1) if self._post is softmax else probs[:, self._risk].max(axis=1)
        labels = self.model.entry.labels
        results: list[MLScore] = []
        start = 0
        for count, truncated in zip(encoded.window_counts, encoded.truncated):
            span = slice(start, start + count)
            best = start + int(np.argmax(risk[span]))
            score = window_adjusted(float(risk[best]), count, self.model.entry.window_penalty)
            label = labels[int(np.argmax(probs[best]))] if score == risk[best] else self._label_for(score)
            results.append(MLScore(label=label, score=round(score, 6), windows=count, truncated=truncated))
            start += count
        return results
