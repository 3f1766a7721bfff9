"""Save a built model and derive its float16 and int8 files, all byte-for-byte reproducible.

- ``to_fp16``: float16 weights and activations for the encoder, float32 inputs/outputs (``keep_io_types``) and
  float32 pooling/normalisation/head. Runs on onnxruntime's CPUExecutionProvider (the fallback when there is no GPU).
- ``to_int8``: onnxruntime dynamic quantization of the dense ``MatMul`` weights (signed int8, per output channel,
  7-bit range) and of the embedding-table ``Gather``; LayerNorm, softmax, pooling and the activation x activation
  attention MatMuls stay float32. See ``INT8_SETTINGS`` for the measured reasons. Activations are quantized per
  token (``per_token_activations``), so a text's scores do not depend on the texts batched with it.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from llm_shield.worker.modelbuild.bert_onnx import EMBEDDING_OUTPUT, LOGITS_OUTPUT, POOLING_PREFIX

# Chosen by measuring agreement with float32 and speed on a 2-core AVX-512 VNNI CPU (MiniLM-L6, ~30-token texts):
# - QInt8 weights: as accurate as QUInt8 and clearly faster (the u8 x s8 kernels);
# - per_channel: embedding cosine vs float32 >= 0.988 on 20-30-token texts instead of 0.82 (per tensor, 7-bit)
#   or 0.94 (per tensor, 8-bit), for a few percent of speed;
# - reduce_range (7-bit weights): same agreement as 8-bit with per_channel, and it avoids the u8 x s8 int16
#   saturation of CPUs without VNNI (AVX2), so the same file gives the same results on any x86 worker;
# - Gather (embedding tables) quantized too: 23 MB instead of 59 MB, same agreement and speed.
INT8_SETTINGS = {"weight_type": "QInt8", "per_channel": True, "reduce_range": True, "op_types": ("MatMul", "Gather")}


def _write_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def model_bytes(model: onnx.ModelProto) -> bytes:
    """Deterministic serialisation (a single file; the models here are far below protobuf's 2 GiB limit)."""
    return model.SerializeToString(deterministic=True)


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Write model to path as one self-contained .onnx file; same model -> same bytes."""
    _write_atomic(Path(path), model_bytes(model))


def _fp32_node_names(model: onnx.ModelProto) -> list[str]:
    """Pooling, normalisation, head and output nodes: everything from the first pooling node on stays float32."""
    names: list[str] = []
    tail = False
    outputs = {EMBEDDING_OUTPUT, LOGITS_OUTPUT}
    for node in model.graph.node:
        tail = tail or node.name.startswith(POOLING_PREFIX)
        if tail or set(node.output) & outputs:
            names.append(node.name)
    return names


def to_fp16(src: Path, dst: Path) -> None:
    """Convert the float32 model at src to float16 weights at dst (float32 inputs and outputs kept)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    converted = convert_float_to_float16(model, keep_io_types=True,
                                         node_block_list=_fp32_node_names(model))
    save_model(converted, dst)


def _matching_nodes(path: Path, patterns: Sequence[str]) -> list[str]:
    if not patterns:
        return []
    graph = onnx.load(str(path), load_external_data=False).graph
    compiled = [re.compile(p) for p in patterns]
    return [node.name for node in graph.node if any(c.search(node.name) for c in compiled)]


_CONSTANTS = {  # initializers the per-token rewrite adds
    "per_token/tiny": np.array(1e-12, dtype=np.float32),  # keeps all-zero rows (padding) from dividing by zero
    "per_token/inv127": np.array(1 / 127, dtype=np.float32),
    "per_token/one": np.array(1.0, dtype=np.float32),
    "per_token/zero_point": np.array(128, dtype=np.uint8),
    "per_token/flat": np.array([-1], dtype=np.int64),
}


def _quantize_per_token(node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Nodes that quantize ``DynamicQuantizeLinear`` node's input x per token: scale ``max|x| / 127`` over the last
    axis (shape ``[..., 1]``), zero point 128, one ``QuantizeLinear`` along the flattened token axis."""
    x, (q, scale, zero_point) = node.input[0], node.output
    name = f"{node.name}/per_token"
    t = {step: f"{name}/{step}" for step in ("max", "min", "neg_min", "abs_max", "flat_x", "flat_scale",
                                               "scale_shape", "flat_zero_point", "x_shape", "flat_q")}
    return [
        helper.make_node("ReduceMax", [x], [t["max"]], name=t["max"], axes=[-1], keepdims=1),
        helper.make_node("ReduceMin", [x], [t["min"]], name=t["min"], axes=[-1], keepdims=1),
        helper.make_node("Neg", [t["min"]], [t["neg_min"]], name=t["neg_min"]),
        helper.make_node("Max", [t["max"], t["neg_min"], "per_token/tiny"], [t["abs_max"]], name=t["abs_max"]),
        helper.make_node("Mul", [t["abs_max"], "per_token/inv127"], [scale], name=f"{name}/scale"),
        helper.make_node("Flatten", [x], [t["flat_x"]], name=t["flat_x"], axis=-1),
        helper.make_node("Reshape", [scale, "per_token/flat"], [t["flat_scale"]], name=t["flat_scale"]),
        helper.make_node("Shape", [t["flat_scale"]], [t["scale_shape"]], name=t["scale_shape"]),
        helper.make_node("Expand", ["per_token/zero_point", t["scale_shape"]], [t["flat_zero_point"]],
                         name=t["flat_zero_point"]),
        helper.make_node("QuantizeLinear", [t["flat_x"], t["flat_scale"], t["flat_zero_point"]], [t["flat_q"]],
                         name=t["flat_q"], axis=0),
        helper.make_node("Shape", [x], [t["x_shape"]], name=t["x_shape"]),
        helper.make_node("Reshape", [t["flat_q"], t["x_shape"]], [q], name=f"{name}/q"),
        helper.make_node("Identity", ["per_token/zero_point"], [zero_point], name=f"{name}/zero_point"),
    ]


def per_token_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    """Quantize activations per token instead of per tensor: a text's int8 scores no longer depend on its batch.

    onnxruntime's dynamic quantization (``DynamicQuantizeLinear``) takes one scale and zero point for the whole
    activation tensor, over every token of every text in the batch, padding included, so a text's int8 score moved
    with the texts batched with it (by up to 0.3 on the out-of-distribution test texts). Here each token gets its
    own symmetric scale and the zero point 128 (`_quantize_per_token`); each ``MatMulInteger -> Cast -> Mul(x_scale
    * w_scale)`` becomes onnxruntime's ``MatMulIntegerToFloat`` with the per-channel weight scale (activation scale
    1) followed by ``Mul`` by the per-token scale. Not left to onnxruntime's own fusion of the original pattern: its
    fused kernel takes a scalar activation scale and would apply the first token's to all of them.
    """
    graph = model.graph
    quantizers = {node.output[0]: node for node in graph.node if node.op_type == "DynamicQuantizeLinear"}
    if not quantizers:
        return model
    opset = next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))
    if opset >= 18:  # ReduceMax/ReduceMin take their axes as an input from opset 18 on
        raise ValueError(f"per-token quantization is written for opset <= 17, the model has {opset}")
    token_scale = {q: node.output[1] for q, node in quantizers.items()}
    products = {node.output[0]: node for node in graph.node
                if node.op_type == "Mul" and set(node.input) & set(token_scale.values())}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replaced: set[str] = set(products)  # output names of nodes dropped from the graph
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.output[0] in replaced:
            continue
        if node.op_type == "DynamicQuantizeLinear":
            nodes += _quantize_per_token(node)
            continue
        if node.op_type != "MatMulInteger" or node.input[0] not in token_scale:
            nodes.append(node)
            continue
        (cast,) = consumers[node.output[0]]
        (rescale,) = consumers[cast.output[0]]
        product = products[next(name for name in rescale.input if name in products)]
        w_scale = next(name for name in product.input if name != token_scale[node.input[0]])
        a, w, a_zero_point, w_zero_point = node.input
        unscaled = f"{node.name}/per_channel"
        nodes += [helper.make_node("MatMulIntegerToFloat", [a, w, "per_token/one", w_scale, a_zero_point, w_zero_point],
                                   [unscaled], name=unscaled, domain="com.microsoft"),
                  helper.make_node("Mul", [unscaled, token_scale[a]], list(rescale.output), name=rescale.name)]
        replaced |= {cast.output[0], rescale.output[0]}
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in _CONSTANTS.items())
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def to_int8(src: Path, dst: Path, *, keep_float: Sequence[str] = ()) -> None:
    r"""Dynamic int8 quantization of src's MatMul weights and embedding tables into dst.

    Activations are quantized at run time, per token (``per_token_activations``): a text's scores do not depend on
    its batch companions. ``keep_float``: regular expressions (``re.search``) of node names left in float32, e.g.
    ``(r"layer\.\d+\.output\.dense/",)`` keeps the six FFN output layers.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="int8-", dir=dst.parent) as tmp:
        out = Path(tmp) / dst.name
        quantize_dynamic(Path(src), out, weight_type=getattr(QuantType, INT8_SETTINGS["weight_type"]),
                         per_channel=INT8_SETTINGS["per_channel"], reduce_range=INT8_SETTINGS["reduce_range"],
                         op_types_to_quantize=list(INT8_SETTINGS["op_types"]), use_external_data_format=False,
                         nodes_to_exclude=_matching_nodes(Path(src), keep_float))
        save_model(per_token_activations(onnx.load(str(out))), dst)  # re-serialised deterministically
