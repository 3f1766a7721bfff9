"""Bring your own model: register a Hugging Face sequence-classification ONNX export in the catalog."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from llm_shield.config import Variant
from llm_shield.errors import CatalogError
from llm_shield.registry.catalog import MODEL_FILE, Catalog, CatalogEntry, ModelFile, load_catalog, save_catalog
from llm_shield.settings import ShieldSettings

RISKY = re.compile(r"injection|jailbreak|toxic|negative|unsafe|malicious|attack|hate|insult|threat|label_1", re.I)


def _labels(config: dict) -> list[str]:
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise CatalogError("config.json has no id2label mapping: add one (e.g. {\"0\": \"SAFE\", \"1\": \"INJECTION\"})")
    return [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]


def register_folder(settings: ShieldSettings, folder: Path, *, task: str, variant: Variant,
                    risk_labels: list[str] | None = None, model_id: str | None = None, threshold: float = 0.5,
                    max_length: int | None = None, postprocess: str = "softmax",
                    source: str | None = None) -> CatalogEntry:
    """Add (or replace) a catalog entry for the export in `folder`; returns it."""
    folder = folder.resolve()
    for name in (MODEL_FILE, "tokenizer.json", "config.json"):
        if not (folder / name).is_file():
            raise CatalogError(f"{folder} has no {name}: expected a Hugging Face ONNX export layout")
    config = json.loads((folder / "config.json").read_text())
    labels = _labels(config)
    risk = risk_labels or [label for label in labels if RISKY.search(label)]
    if not risk:
        raise CatalogError(f"cannot tell which of the labels {labels} means risk: pass --risk-label")
    files = [ModelFile(name=p.name, sha256=hashlib.sha256(p.read_bytes()).hexdigest(), size=p.stat().st_size)
             for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix in (".onnx", ".json", ".txt", ".model", ".data")]
    model = next(f for f in files if f.name == MODEL_FILE)
    length = max_length or min(int(config.get("max_position_embeddings", 512)), 512)
    entry = CatalogEntry(
        id=model_id or f"{task.replace('_', '-')}-{folder.name}-{variant.value}".lower(),
        task=task, variant=variant, source=source or folder.as_uri() + "/", sha256=model.sha256,
        size=model.size, files=files, labels=labels, risk_labels=risk, postprocess=postprocess,  # type: ignore[arg-type]
        max_length=length, threshold=threshold, description=f"registered from {folder}",
    )
    path = Path(settings.catalog_location)
    catalog = load_catalog(path) if path.exists() else Catalog()
    catalog.upsert(entry)
    save_catalog(catalog, path)
    return entry
