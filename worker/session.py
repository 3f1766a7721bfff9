"""onnxruntime session creation: providers by variant, thread counts by node share, sha256 checked at load."""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

from llm_shield.config import Variant
from llm_shield.errors import ChecksumMismatchError, ModelUnavailableError
from llm_shield.node import intra_op_threads
from llm_shield.settings import ShieldSettings

log = logging.getLogger("shield.worker.session")


def providers_for(variant: Variant) -> list[str]:
    """fp16 asks for CUDA and falls back to CPU with a warning; the other variants run on CPU."""
    import onnxruntime as ort

    if variant is Variant.fp16:
        if "CUDAExecutionProvider" in ort.get_available_providers():
            _preload_cuda_libraries()
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        log.warning("fp16 variant: CUDAExecutionProvider is not available; running on CPU (slow for fp16)")
    return ["CPUExecutionProvider"]


@functools.cache
def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels (`onnxruntime-gpu[cuda,cudnn]`) when they are installed, so
    a pip-installed GPU node needs no LD_LIBRARY_PATH; libraries on the system path (CUDA images) load as usual."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu >= 1.21
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # noqa: BLE001 - the session's own load then reports what is missing
        log.debug("onnxruntime.preload_dlls failed: %s", exc)


def read_verified(path: Path, sha256: str) -> bytes:
    """The model's bytes, refused when they do not hash to the catalog's sha256 (altered after download)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelUnavailableError(f"cannot read model {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ChecksumMismatchError(
            f"model {path} has sha256 {digest}, not the catalog's {sha256}: it was altered after download; "
            "refusing to load it (delete the file and it will be fetched again)"
        )
    return data


def create_session(model_bytes: bytes, variant: Variant, settings: ShieldSettings):  # type: ignore[no-untyped-def]
    """An InferenceSession over the verified bytes (so what was hashed is exactly what runs)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    threads = intra_op_threads(settings)
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 1 and settings.worker_concurrency != 1:
        # spinning threads steal cores from sibling processes sharing the node
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    providers = providers_for(variant)
    try:
        session = ort.InferenceSession(model_bytes, sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own hierarchy; report one line
        raise ModelUnavailableError(f"onnxruntime could not load the model: {exc}") from exc
    if variant is Variant.fp16 and "CUDAExecutionProvider" in providers:
        if "CUDAExecutionProvider" not in session.get_providers():
            log.warning("fp16 variant: CUDA provider failed to initialise; running on CPU")
    return session
