"""The catalog: which models exist, where their files come from, and what their files must hash to."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from llm_shield.config import Variant
from llm_shield.contract import ModelRef
from llm_shield.errors import CatalogError

CATALOG_VERSION = 1
#: Entry ids and file names become path components in the cache folder: nothing that could climb out of it.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MODEL_FILE = "model.onnx"


def _safe_component(value: str, what: str) -> str:
    if not _SAFE_NAME.match(value) or ".." in value:
        raise ValueError(f"{what} {value!r} is not allowed: use letters, digits, '.', '_' and '-' only")
    return value


class ModelFile(BaseModel):
    """One file of a model folder, with the digest and size it must have."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)

    _check_name = field_validator("name")(lambda cls, v: _safe_component(v, "file name"))


class CatalogEntry(BaseModel):
    """A model of one task in one variant, laid out like a Hugging Face ONNX export."""

    id: str
    task: str
    variant: Variant
    source: str = Field(description="Folder URL holding the files: file://, http(s):// or s3://")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of model.onnx")
    size: int = Field(ge=0, description="Bytes of model.onnx")
    files: list[ModelFile]
    labels: list[str] = Field(min_length=1)
    risk_labels: list[str] = Field(min_length=1, description="Labels whose probability is the risk score")
    postprocess: Literal["softmax", "sigmoid"] = "softmax"
    max_length: int = Field(default=256, ge=8)
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    window_penalty: float = Field(
        default=0.0, ge=0.0,
        description="Aggregation over a text's windows: the risk logit of the riskiest window minus "
                    "window_penalty * ln(windows), so long texts do not pile up false positives (0: plain max)")
    tokenizer: str = "tokenizer.json"
    description: str = ""
    license: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    built_from: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the trained artifact the model was built from (`models build --if-outdated` "
                    "rebuilds when the installed one differs)")

    _check_id = field_validator("id")(lambda cls, v: _safe_component(v, "entry id"))

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        if not value.startswith(("file://", "http://", "https://", "s3://")):
            raise ValueError(f"source {value!r} must be a file://, http(s):// or s3:// URL")
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _consistent(self) -> "CatalogEntry":
        names = [f.name for f in self.files]
        if MODEL_FILE not in names or self.tokenizer not in names:
            raise ValueError(f"entry {self.id}: files must include {MODEL_FILE} and {self.tokenizer}")
        model = self.file(MODEL_FILE)
        if model.sha256 != self.sha256 or model.size != self.size:
            raise ValueError(f"entry {self.id}: sha256/size disagree with the {MODEL_FILE} file record")
        unknown = set(self.risk_labels) - set(self.labels)
        if unknown:
            raise ValueError(f"entry {self.id}: risk_labels {sorted(unknown)} are not among labels {self.labels}")
        return self

    def file(self, name: str) -> ModelFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def ref(self) -> ModelRef:
        return ModelRef(id=self.id, variant=self.variant, sha256=self.sha256)


class Catalog(BaseModel):
    """A versioned list of catalog entries."""

    version: int = CATALOG_VERSION
    models: list[CatalogEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "Catalog":
        if self.version != CATALOG_VERSION:
            raise ValueError(f"catalog version {self.version} is not supported (this build reads {CATALOG_VERSION})")
        ids = [m.id for m in self.models]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate entry ids: {sorted(dupes)}")
        return self

    def find(self, task: str, variant: Variant | str) -> CatalogEntry:
        """The entry serving `task` in `variant`; the last one listed wins."""
        variant = Variant(variant)
        matches = [m for m in self.models if m.task == task and m.variant == variant]
        if not matches:
            have = sorted({f"{m.task}/{m.variant.value}" for m in self.models}) or ["nothing"]
            raise CatalogError(
                f"the catalog has no model for {task}/{variant.value} (it has {', '.join(have)}); "
                "run `llm-shield models build` or register one with `llm-shield models add`"
            )
        return matches[-1]

    def upsert(self, entry: CatalogEntry) -> None:
        """Add `entry`, replacing an entry with the same id."""
        self.models = [m for m in self.models if m.id != entry.id] + [entry]


def parse_catalog(raw: bytes | str, location: str) -> Catalog:
    try:
        return Catalog.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise CatalogError(f"catalog {location} is not valid JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CatalogError(f"catalog {location} is invalid at {where}: {first['msg']}") from None


def load_catalog(location: str | Path) -> Catalog:
    """Read a catalog from a path or a file://, http(s):// or s3:// URL."""
    location = str(location)
    if location.startswith(("http://", "https://", "s3://")):
        from llm_shield.registry.transfer import read_url

        return parse_catalog(read_url(location), location)
    path = Path(location.removeprefix("file://"))
    if not path.exists():
        raise CatalogError(f"no catalog at {path}: run `llm-shield models build`, or set SHIELD_CATALOG")
    return parse_catalog(path.read_bytes(), str(path))


def save_catalog(catalog: Catalog, path: Path) -> None:
    """Write the catalog atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = catalog.model_dump_json(indent=2).encode() + b"\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".catalog-", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
