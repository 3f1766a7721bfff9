"""A plain numpy (float64) forward pass of the BERT encoder + mean pooling (+ head): the tests' independent oracle.

It shares nothing with the ONNX builder except the weights, the config and which hidden states ``pooling="multi"``
pools (``MULTI_POOLING_LAYERS``, a documented constant).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from llm_shield.worker.modelbuild.bert_onnx import MULTI_POOLING_LAYERS
from llm_shield.worker.modelbuild.weights import BertConfig

_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_forward(weights: Mapping[str, np.ndarray], config: BertConfig, input_ids: np.ndarray,
                  attention_mask: np.ndarray, token_type_ids: np.ndarray,
                  head: Sequence[tuple[np.ndarray, np.ndarray]] | None = None, normalize: bool = True,
                  pooling: str = "mean") -> np.ndarray:
    """Embeddings [batch, hidden * parts] (head None) or logits [batch, num_labels], as float64.

    ``pooling="mean"``: masked mean of the last layer; ``"multi"``: masked means of the hidden states
    ``MULTI_POOLING_LAYERS`` (0 is the embeddings), each L2-normalised when ``normalize``, concatenated.
    """
    if pooling == "mean":
        pooled_states = [config.num_hidden_layers]
    elif pooling == "multi":
        pooled_states = list(MULTI_POOLING_LAYERS)
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    tables = ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
              "embeddings.token_type_embeddings.weight")
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()
         if np.asarray(v).dtype.kind == "f" and k not in tables}
    ids = np.asarray(input_ids, dtype=np.int64)
    mask = np.asarray(attention_mask, dtype=np.float64)
    types = np.asarray(token_type_ids, dtype=np.int64)
    batch, seq = ids.shape
    eps = config.layer_norm_eps
    n_heads, d = config.num_attention_heads, config.head_size

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        flat = x.reshape(-1, x.shape[-1])  # 2-D so numpy hands it to BLAS
        return (flat @ w[name + ".weight"].T + w[name + ".bias"]).reshape(*x.shape[:-1], -1)

    x = (np.asarray(weights["embeddings.word_embeddings.weight"])[ids].astype(np.float64)
         + np.asarray(weights["embeddings.token_type_embeddings.weight"])[types].astype(np.float64)
         + np.asarray(weights["embeddings.position_embeddings.weight"])[:seq].astype(np.float64)[None, :, :])
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    states = [x]
    bias = (1.0 - mask)[:, None, None, :] * -10000.0

    def split(t: np.ndarray) -> np.ndarray:  # [b, s, h] -> [b, heads, s, d]
        return t.reshape(batch, seq, n_heads, d).transpose(0, 2, 1, 3)

    for n in range(config.num_hidden_layers):
        p = f"encoder.layer.{n}."
        q = split(dense(x, p + "attention.self.query"))
        k = split(dense(x, p + "attention.self.key"))
        v = split(dense(x, p + "attention.self.value"))
        probs = _softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, n_heads * d)
        x = _layer_norm(dense(ctx, p + "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"],
                        w[p + "attention.output.LayerNorm.bias"], eps)
        inter = _gelu(dense(x, p + "intermediate.dense"))
        x = _layer_norm(dense(inter, p + "output.dense") + x, w[p + "output.LayerNorm.weight"],
                        w[p + "output.LayerNorm.bias"], eps)
        states.append(x)

    parts = []
    for state in pooled_states:
        part = (states[state] * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        if normalize:
            part = part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
        parts.append(part)
    pooled = np.concatenate(parts, axis=1)
    if head is None:
        return pooled
    y = pooled
    for n, (weight, b) in enumerate(head):
        y = y @ np.asarray(weight, dtype=np.float64).T + np.asarray(b, dtype=np.float64)
        if n < len(head) - 1:
            y = np.maximum(y, 0.0)
    return y
