"""Save a built model and derive its float16 and int8 files, all byte-for-byte reproducible.

- ``to_fp16``: float16 weights and activations for the encoder, float32 inputs/outputs (``keep_io_types``) and
  float32 pooling/normalisation/head. Runs on onnxruntime's CPUExecutionProvider (the fallback when there is no GPU).
- ``to_int8``: onnxruntime dynamic quantization of the dense ``MatMul`` weights (signed int8, per output channel,
  7-bit range) and of the embedding-table ``Gather``; LayerNorm, softmax, pooling and the activation x activation
  attention MatMuls stay float32. See ``INT8_SETTINGS`` for the measured reasons.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnx

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


def to_int8(src: Path, dst: Path, *, keep_float: Sequence[str] = ()) -> None:
    r"""Dynamic int8 quantization of src's MatMul weights and embedding tables into dst.

    Activations are quantized at run time (per tensor), which costs most on very short texts: cosine vs float32
    is >= 0.985 from ~10 tokens on but can drop to ~0.93-0.96 for 3-4-token texts. ``keep_float``: regular
    expressions (``re.search``) of node names left in float32, e.g. ``(r"layer\.\d+\.output\.dense/",)`` keeps the
    six FFN output layers: worst short-text cosine ~0.97, at about half of the int8 speed-up.
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
        save_model(onnx.load(str(out)), dst)  # re-serialise deterministically
