"""Per-process model loader: one onnxruntime session per (task, variant), loaded lazily and cached."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llm_shield.config import Variant
from llm_shield.contract import ModelRef, ServedModel, WindowConfig
from llm_shield.registry import Catalog, CatalogEntry, ensure_available, load_catalog
from llm_shield.registry.catalog import MODEL_FILE
from llm_shield.settings import ShieldSettings, get_settings
from llm_shield.worker.session import create_session, read_verified
from llm_shield.worker.tokenizer import TextTokenizer

log = logging.getLogger("shield.worker.loader")


@dataclass
class LoadedModel:
    """A ready model: its catalog entry, session, tokenizer and the graph inputs it takes."""

    entry: CatalogEntry
    session: Any
    tokenizer: TextTokenizer
    input_names: list[str]
    folder: Path
    load_seconds: float = 0.0
    providers: list[str] = field(default_factory=list)

    @property
    def ref(self) -> ModelRef:
        return self.entry.ref

    @property
    def window(self) -> WindowConfig:
        t = self.tokenizer
        return WindowConfig(max_length=t.max_length, stride=t.stride, max_windows=t.max_windows,
                            window_penalty=self.entry.window_penalty)

    def served(self) -> ServedModel:
        e = self.entry
        return ServedModel(model=self.ref, window=self.window, threshold=e.threshold, labels=e.labels,
                           risk_labels=e.risk_labels)


class LoaderStats(BaseModel):
    models_loaded: int
    loads: int
    cache_hits: int
    load_seconds: float


class ModelLoader:
    """Loads each (task, variant) once per process; thread-safe."""

    def __init__(self, settings: ShieldSettings | None = None, catalog: Catalog | None = None) -> None:
        self.settings = settings or get_settings()
        self._catalog = catalog
        self._models: dict[tuple[str, Variant], LoadedModel] = {}
        self._lock = threading.Lock()
        self.loads = 0
        self.cache_hits = 0
        self.load_seconds = 0.0

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = load_catalog(self.settings.catalog_location)
        return self._catalog

    def get(self, task: str, variant: Variant | str) -> LoadedModel:
        key = (task, Variant(variant))
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self.cache_hits += 1
                return model
            model = self._load(*key)
            self._models[key] = model
            return model

    def _load(self, task: str, variant: Variant) -> LoadedModel:
        started = time.perf_counter()
        entry = self.catalog.find(task, variant)
        folder = ensure_available(task, variant, self.settings, self.catalog)
        session = create_session(read_verified(folder / MODEL_FILE, entry.sha256), variant, self.settings)
        s = self.settings
        tokenizer = TextTokenizer(folder / entry.tokenizer, entry.max_length, s.window_stride, s.max_windows)
        elapsed = time.perf_counter() - started
        self.loads += 1
        self.load_seconds += elapsed
        log.info("loaded %s (%s) in %.2f s on %s", entry.id, variant.value, elapsed, session.get_providers())
        return LoadedModel(
            entry=entry,
            session=session,
            tokenizer=tokenizer,
            input_names=[i.name for i in session.get_inputs()],
            folder=folder,
            load_seconds=elapsed,
            providers=session.get_providers(),
        )

    def preload(self, pairs: list[tuple[str, Variant | str]]) -> list[LoadedModel]:
        return [self.get(task, variant) for task, variant in pairs]

    def unload(self, task: str | None = None, variant: Variant | str | None = None) -> int:
        """Drop sessions matching task and/or variant (all when both are None); returns how many."""
        with self._lock:
            doomed = [
                k for k in self._models
                if (task is None or k[0] == task) and (variant is None or k[1] == Variant(variant))
            ]
            for k in doomed:
                del self._models[k]
            return len(doomed)

    def loaded(self) -> list[LoadedModel]:
        return list(self._models.values())

    def stats(self) -> LoaderStats:
        return LoaderStats(models_loaded=len(self._models), loads=self.loads, cache_hits=self.cache_hits,
                           load_seconds=round(self.load_seconds, 3))
