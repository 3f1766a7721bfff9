"""Write a BERT encoder + mean pooling (+ optional dense head) as a plain ONNX graph, straight from numpy weights.

Graph layout (the same computation as Hugging Face ``BertModel`` followed by sentence-transformers' mean pooling
and ``Normalize``):

- inputs ``input_ids``, ``attention_mask``, ``token_type_ids``: int64 ``[batch, sequence]``;
- embeddings: word + token type + position (positions ``0..sequence-1``), then LayerNormalization;
- per layer: self-attention with an additive mask ``(1 - mask) * -10000`` (finite in float16), output dense +
  residual + LayerNormalization, intermediate dense + exact GELU (``Erf``), output dense + residual +
  LayerNormalization;
- pooling: mean over tokens weighted by ``attention_mask``, then L2 normalisation when ``normalize=True``; with
  ``pooling="multi"`` the same for several layers' outputs, each normalised on its own, then concatenated;
- output ``sentence_embedding`` float32 ``[batch, hidden * parts]`` without a head, else ``logits`` float32
  ``[batch, num_labels]`` after ``MatMul + Add`` layers with ReLU between them.

Every dense layer is ``MatMul`` with a transposed ``[in, out]`` initializer followed by ``Add``, so
onnxruntime's dynamic quantization finds them, and the node pattern is the one onnxruntime's transformer optimizer
recognises. Names are fixed strings, so the same weights always give byte-identical models.
Pooling nodes are named ``pooling/...``: ``variants.to_fp16`` keeps them in float32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from llm_shield.worker.modelbuild.weights import BertConfig

MASK_VALUE = -10000.0  # finite and exact in float16, large enough that exp() underflows to 0 after softmax
POOLING_PREFIX = "pooling/"
EMBEDDING_OUTPUT = "sentence_embedding"
LOGITS_OUTPUT = "logits"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
PRODUCER = "llm-shield-workers.modelbuild"
IR_VERSION = 8  # enough for opset 17 and readable by every onnxruntime >= 1.18
POOLINGS = ("mean", "multi")
# hidden_states pooled by pooling="multi": the embeddings are 0, layer n's output is n (MiniLM-L6: 6 is the last).
# Chosen on a validation split carved out of the prompt-injection training data (see build.py): mean-pooling layers
# 2, 4 and 6 gave F1 0.982 against 0.958 for the last layer alone; all seven hidden states 0.983, max pooling or the
# CLS token added nothing.
MULTI_POOLING_LAYERS = (2, 4, 6)

Head = Sequence[tuple[np.ndarray, np.ndarray]]


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def init(self, name: str, array: np.ndarray) -> str:
        if name in self._names:
            raise ValueError(f"duplicate initializer {name}")
        self._names.add(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, name: str, value: float | int | Sequence, dtype: type = np.float32) -> str:
        return self.init(name, np.asarray(value, dtype=dtype))

    def op(self, op_type: str, inputs: Sequence[str], name: str, **attrs) -> str:
        """Add a node with one output named like the node; return the output name."""
        if name in self._names:
            raise ValueError(f"duplicate name {name}")
        self._names.add(name)
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def dense(self, x: str, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
        """x @ weight.T + bias for a torch-layout weight [out, in]."""
        w = self.init(f"{name}.weight", np.asarray(weight, dtype=np.float32).T)
        b = self.init(f"{name}.bias", np.asarray(bias, dtype=np.float32))
        y = self.op("MatMul", [x, w], f"{name}/MatMul")
        return self.op("Add", [y, b], f"{name}/Add")

    def layer_norm(self, x: str, weight: np.ndarray, bias: np.ndarray, eps: float, name: str) -> str:
        g = self.init(f"{name}.weight", np.asarray(weight, dtype=np.float32))
        b = self.init(f"{name}.bias", np.asarray(bias, dtype=np.float32))
        return self.op("LayerNormalization", [x, g, b], f"{name}/LayerNormalization", axis=-1, epsilon=float(eps))


def _check_head(head: Head, hidden: int) -> list[tuple[np.ndarray, np.ndarray]]:
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    width = hidden
    if len(head) == 0:
        raise ValueError("head must have at least one layer (or be None for embeddings)")
    for n, (weight, bias) in enumerate(head):
        weight = np.asarray(weight, dtype=np.float32)
        bias = np.asarray(bias, dtype=np.float32)
        if weight.ndim != 2 or weight.shape[1] != width:
            raise ValueError(f"head layer {n}: weight shape {weight.shape}, expected [out, {width}]")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"head layer {n}: bias shape {bias.shape}, expected ({weight.shape[0]},)")
        layers.append((weight, bias))
        width = weight.shape[0]
    return layers


def pooling_layers(pooling: str, config: BertConfig) -> tuple[int, ...]:
    """Indices into Hugging Face's ``hidden_states`` (0: embeddings, n: output of layer n) that ``pooling`` pools."""
    if pooling == "mean":
        return (config.num_hidden_layers,)
    if pooling == "multi":
        if max(MULTI_POOLING_LAYERS) > config.num_hidden_layers:
            raise ValueError(f"pooling 'multi' needs {max(MULTI_POOLING_LAYERS)} layers, the model has "
                             f"{config.num_hidden_layers}")
        return MULTI_POOLING_LAYERS
    raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")


def pooled_width(pooling: str, config: BertConfig) -> int:
    """Width of the pooled features (the embedding output, the head's input) for ``pooling``."""
    return config.hidden_size * len(pooling_layers(pooling, config))


def build_classifier_graph(weights: Mapping[str, np.ndarray], config: BertConfig,
                           head: Head | None, *, normalize: bool = True, pooling: str = "mean",
                           opset: int = 17) -> onnx.ModelProto:
    """Build the ONNX model: encoder + masked mean pooling (+ L2 normalisation) (+ dense head).

    ``weights`` are Hugging Face BertModel names without the ``bert.`` prefix (see ``weights.load_bert_weights``);
    ``head`` is a list of ``(W [out, in], b [out])`` with ReLU between layers, or None for an embedding model.
    ``pooling``: ``"mean"`` pools the last layer (sentence-transformers' embedding); ``"multi"`` concatenates the
    separately normalised mean poolings of ``MULTI_POOLING_LAYERS`` (richer frozen features for classifier heads).
    """
    if opset < 17:
        raise ValueError("opset 17 or newer is needed (LayerNormalization)")
    hidden, heads = config.hidden_size, config.num_attention_heads
    head_size = config.head_size
    eps = config.layer_norm_eps
    layers = pooling_layers(pooling, config)
    head_layers = _check_head(head, hidden * len(layers)) if head is not None else None
    g = _GraphBuilder()

    # Embeddings.
    word = g.op("Gather", [g.init("embeddings.word_embeddings.weight", weights["embeddings.word_embeddings.weight"]),
                           "input_ids"], "embeddings/word/Gather", axis=0)
    token_type = g.op("Gather", [g.init("embeddings.token_type_embeddings.weight",
                                        weights["embeddings.token_type_embeddings.weight"]), "token_type_ids"],
                      "embeddings/token_type/Gather", axis=0)
    seq_len = g.op("Shape", ["input_ids"], "embeddings/position/Shape", start=1, end=2)
    positions = g.op("Slice", [g.init("embeddings.position_embeddings.weight",
                                      weights["embeddings.position_embeddings.weight"]),
                               g.const("embeddings/position/starts", [0], np.int64), seq_len,
                               g.const("embeddings/position/axes", [0], np.int64)],
                     "embeddings/position/Slice")
    summed = g.op("Add", [word, token_type], "embeddings/Add")
    summed = g.op("Add", [summed, positions], "embeddings/Add_1")
    x = g.layer_norm(summed, weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"], eps,
                     "embeddings.LayerNorm")
    hidden_states = [x]  # Hugging Face's hidden_states: the embeddings, then each layer's output

    # Additive attention mask [batch, 1, 1, sequence]: 0 where attended, -10000 on padding.
    mask = g.op("Unsqueeze", ["attention_mask", g.const("mask/axes_1", [1], np.int64)], "mask/Unsqueeze")
    mask = g.op("Unsqueeze", [mask, g.const("mask/axes_2", [2], np.int64)], "mask/Unsqueeze_1")
    mask = g.op("Cast", [mask], "mask/Cast", to=TensorProto.FLOAT)
    mask = g.op("Sub", [g.const("mask/one", 1.0), mask], "mask/Sub")
    mask_bias = g.op("Mul", [mask, g.const("mask/value", MASK_VALUE)], "mask/Mul")

    split_shape = g.const("attention/split_shape", [0, 0, heads, head_size], np.int64)
    merge_shape = g.const("attention/merge_shape", [0, 0, hidden], np.int64)
    scale = g.const("attention/scale", math.sqrt(head_size))
    sqrt2 = g.const("gelu/sqrt2", math.sqrt(2.0))
    one = g.const("gelu/one", 1.0)
    half = g.const("gelu/half", 0.5)

    for n in range(config.num_hidden_layers):
        p = f"encoder.layer.{n}."
        q = g.dense(x, weights[p + "attention.self.query.weight"], weights[p + "attention.self.query.bias"],
                    p + "attention.self.query")
        k = g.dense(x, weights[p + "attention.self.key.weight"], weights[p + "attention.self.key.bias"],
                    p + "attention.self.key")
        v = g.dense(x, weights[p + "attention.self.value.weight"], weights[p + "attention.self.value.bias"],
                    p + "attention.self.value")
        q = g.op("Reshape", [q, split_shape], p + "attention.self/q/Reshape")
        q = g.op("Transpose", [q], p + "attention.self/q/Transpose", perm=[0, 2, 1, 3])
        k = g.op("Reshape", [k, split_shape], p + "attention.self/k/Reshape")
        k = g.op("Transpose", [k], p + "attention.self/k/Transpose", perm=[0, 2, 3, 1])
        v = g.op("Reshape", [v, split_shape], p + "attention.self/v/Reshape")
        v = g.op("Transpose", [v], p + "attention.self/v/Transpose", perm=[0, 2, 1, 3])
        scores = g.op("MatMul", [q, k], p + "attention.self/scores/MatMul")
        scores = g.op("Div", [scores, scale], p + "attention.self/scores/Div")
        scores = g.op("Add", [scores, mask_bias], p + "attention.self/scores/Add")
        probs = g.op("Softmax", [scores], p + "attention.self/Softmax", axis=-1)
        ctx = g.op("MatMul", [probs, v], p + "attention.self/context/MatMul")
        ctx = g.op("Transpose", [ctx], p + "attention.self/context/Transpose", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merge_shape], p + "attention.self/context/Reshape")
        attn = g.dense(ctx, weights[p + "attention.output.dense.weight"], weights[p + "attention.output.dense.bias"],
                       p + "attention.output.dense")
        attn = g.op("Add", [attn, x], p + "attention.output/residual/Add")
        x = g.layer_norm(attn, weights[p + "attention.output.LayerNorm.weight"],
                         weights[p + "attention.output.LayerNorm.bias"], eps, p + "attention.output.LayerNorm")
        inter = g.dense(x, weights[p + "intermediate.dense.weight"], weights[p + "intermediate.dense.bias"],
                        p + "intermediate.dense")
        gelu = g.op("Div", [inter, sqrt2], p + "intermediate/gelu/Div")
        gelu = g.op("Erf", [gelu], p + "intermediate/gelu/Erf")
        gelu = g.op("Add", [gelu, one], p + "intermediate/gelu/Add")
        gelu = g.op("Mul", [inter, gelu], p + "intermediate/gelu/Mul")
        gelu = g.op("Mul", [gelu, half], p + "intermediate/gelu/Mul_1")
        out = g.dense(gelu, weights[p + "output.dense.weight"], weights[p + "output.dense.bias"],
                      p + "output.dense")
        out = g.op("Add", [out, x], p + "output/residual/Add")
        x = g.layer_norm(out, weights[p + "output.LayerNorm.weight"], weights[p + "output.LayerNorm.bias"], eps,
                         p + "output.LayerNorm")
        hidden_states.append(x)

    # Pooling: masked mean of each pooled hidden state (sentence-transformers: sum / clamp(count, 1e-9)), each part
    # L2-normalised when ``normalize=True`` (torch.nn.functional.normalize(p=2, dim=1, eps=1e-12)), then concatenated.
    # All pooling nodes come after the encoder so that ``variants.to_fp16`` keeps exactly them (and the head) in fp32.
    pp = POOLING_PREFIX
    weight = g.op("Cast", ["attention_mask"], pp + "mask/Cast", to=TensorProto.FLOAT)
    weight = g.op("Unsqueeze", [weight, g.const(pp + "axes_2", [2], np.int64)], pp + "mask/Unsqueeze")
    axes_1 = count = norm_min = None
    parts = []
    for layer in layers:
        sp = pp if pooling == "mean" else f"{pp}hidden.{layer}/"  # the single-part names predate multi-layer pooling
        masked = g.op("Mul", [hidden_states[layer], weight], sp + "Mul")
        axes_1 = axes_1 or g.const(pp + "axes_1", [1], np.int64)
        total = g.op("ReduceSum", [masked, axes_1], sp + "sum/ReduceSum", keepdims=0)
        if count is None:
            count = g.op("ReduceSum", [weight, axes_1], pp + "count/ReduceSum", keepdims=0)
            count = g.op("Max", [count, g.const(pp + "count/min", 1e-9)], pp + "count/Max")
        part = g.op("Div", [total, count], sp + "mean/Div")
        if normalize:
            norm = g.op("ReduceL2", [part], sp + "normalize/ReduceL2", axes=[1], keepdims=1)
            norm_min = norm_min or g.const(pp + "normalize/min", 1e-12)
            norm = g.op("Max", [norm, norm_min], sp + "normalize/Max")
            part = g.op("Div", [part, norm], sp + "normalize/Div")
        parts.append(part)
    pooled = parts[0] if len(parts) == 1 else g.op("Concat", parts, pp + "Concat", axis=1)
    width = hidden * len(parts)

    if head_layers is None:
        y = g.op("Identity", [pooled], EMBEDDING_OUTPUT)
        output = helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", width])
    else:
        y = pooled
        for n, (w, b) in enumerate(head_layers):
            y = g.dense(y, w, b, f"head.{n}")
            if n < len(head_layers) - 1:
                y = g.op("Relu", [y], f"head.{n}/Relu")
        y = g.op("Identity", [y], LOGITS_OUTPUT)
        output = helper.make_tensor_value_info(LOGITS_OUTPUT, TensorProto.FLOAT,
                                               ["batch", int(head_layers[-1][0].shape[0])])

    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"]) for name in INPUT_NAMES]
    graph = helper.make_graph(g.nodes, "minilm_classifier" if head_layers else "minilm_embedding", inputs, [output],
                              initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=PRODUCER,
                              producer_version="1", ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=False)
    return model
