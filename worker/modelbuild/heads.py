"""Classification heads trained on frozen sentence embeddings with numpy: deterministic, no PyTorch."""

from __future__ import annotations

import numpy as np


def precision_recall_f1(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    tp = int(((y_true == 1) & (y_pred == 1)).sum())
    fp = int(((y_true == 0) & (y_pred == 1)).sum())
    fn = int(((y_true == 1) & (y_pred == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = float((y_true == y_pred).mean()) if len(y_true) else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "accuracy": round(accuracy, 4), "test_size": float(len(y_true))}


def train_mlp(x: np.ndarray, y: np.ndarray, hidden: int = 256, epochs: int = 40, lr: float = 1e-3,
              weight_decay: float = 1e-4, batch: int = 64, input_scale: float = 5.0, input_dropout: float = 0.0,
              seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """A one-hidden-layer ReLU head (2 logits) fitted with Adam on softmax cross-entropy.

    Computed in float32 (twice as fast as float64, same accuracy on the validation split).
    Deterministic for a given seed and BLAS. `input_scale` stretches the unit-norm sentence embeddings
    (it is folded into the first layer's weights). `input_dropout`: inverted dropout on the input features
    while training (nothing changes at inference). Returns layers as (W [out, in], b [out]).
    """
    if not 0.0 <= input_dropout < 1.0:
        raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
    rng = np.random.default_rng(seed)
    x = (np.asarray(x, dtype=np.float64) * input_scale).astype(np.float32)
    labels = y.astype(np.int64)
    d = x.shape[1]
    params = [a.astype(np.float32) for a in (rng.normal(0, np.sqrt(2 / d), (d, hidden)), np.zeros(hidden),
                                             rng.normal(0, np.sqrt(1 / hidden), (hidden, 2)), np.zeros(2))]
    first, second = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            xb = x[idx]
            if input_dropout:
                xb = xb * (rng.random(xb.shape) >= input_dropout) / (1.0 - input_dropout)
            grads = _mlp_gradients(params, xb, labels[idx], weight_decay)
            step += 1
            for i, (p, g) in enumerate(zip(params, grads)):
                first[i] = 0.9 * first[i] + 0.1 * g
                second[i] = 0.999 * second[i] + 0.001 * g * g
                p -= lr * (first[i] / (1 - 0.9 ** step)) / (np.sqrt(second[i] / (1 - 0.999 ** step)) + 1e-8)
    w1, b1, w2, b2 = params
    return [((w1 * input_scale).T.astype(np.float32), b1.astype(np.float32)),
            (w2.T.astype(np.float32), b2.astype(np.float32))]


def train_mlp_ensemble(x: np.ndarray, y: np.ndarray, members: int = 3, seed: int = 0,
                       **kwargs) -> list[tuple[np.ndarray, np.ndarray]]:
    """`members` heads from `train_mlp` (seeds seed, seed+1, ...) folded into one wider head.

    The mean of k one-hidden-layer MLPs' logits is exactly one MLP whose hidden units are all of theirs
    (first layers stacked) and whose output layer is theirs side by side divided by k: same graph, same speed
    per hidden unit, less dependence on any one seed.
    """
    if members < 1:
        raise ValueError("members must be >= 1")
    heads = [train_mlp(x, y, seed=seed + k, **kwargs) for k in range(members)]
    if members == 1:
        return heads[0]
    w1 = np.concatenate([h[0][0] for h in heads], axis=0)
    b1 = np.concatenate([h[0][1] for h in heads])
    w2 = np.concatenate([h[1][0].astype(np.float64) / members for h in heads], axis=1)
    b2 = np.mean([h[1][1].astype(np.float64) for h in heads], axis=0)
    return [(w1, b1), (w2.astype(np.float32), b2.astype(np.float32))]


def _mlp_gradients(params: list[np.ndarray], xb: np.ndarray, yb: np.ndarray, weight_decay: float) -> list[np.ndarray]:
    w1, b1, w2, b2 = params
    hidden = xb @ w1 + b1
    active = np.maximum(hidden, 0)
    logits = active @ w2 + b2
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(yb)), yb] -= 1
    g_logits = probs / len(yb)
    g_active = g_logits @ w2.T
    g_active[hidden <= 0] = 0
    return [xb.T @ g_active + weight_decay * w1, g_active.sum(axis=0),
            active.T @ g_logits + weight_decay * w2, g_logits.sum(axis=0)]
