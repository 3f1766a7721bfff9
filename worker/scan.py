"""Scanning one batch: dedupe, heuristics, one cache round trip, inference on the misses only, assembly."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from llm_shield.contract import MLScore, ScanOptions, ServedModel, TextResult, ml_cache_keys
from llm_shield.detection.decide import assemble, plan_text
from llm_shield.errors import ShieldError
from llm_shield.settings import ShieldSettings
from llm_shield.worker import metrics
from llm_shield.worker.inference import InferenceEngine
from llm_shield.worker.loader import ModelLoader

log = logging.getLogger("shield.worker.scan")


@dataclass
class CircuitBreaker:
    """Stops calling a failing model for `cooldown` seconds after `threshold` failures in a row."""

    threshold: int = 3
    cooldown: float = 30.0
    failures: int = 0
    opened_at: float | None = None

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if time.monotonic() - self.opened_at >= self.cooldown:
            self.opened_at = None  # half-open: let one call through and see
            self.failures = self.threshold - 1
            return True
        return False

    def record(self, ok: bool) -> None:
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()


@dataclass
class BatchScanner:
    """Scans batches for one process: owns the loader, the engines and the breakers; talks to the cache."""

    settings: ShieldSettings
    loader: ModelLoader
    cache: object | None = None  # shield.cache.ResultCache, or None to scan uncached
    engines: dict[tuple[str, str], InferenceEngine] = field(default_factory=dict)
    breakers: dict[tuple[str, str], CircuitBreaker] = field(default_factory=dict)

    def engine(self, scanner: str, variant: str) -> InferenceEngine:
        key = (scanner, variant)
        if key not in self.engines:
            started = time.perf_counter()
            model = self.loader.get(scanner, variant)
            metrics.MODEL_LOAD_SECONDS.labels(model.entry.id).observe(time.perf_counter() - started)
            self.engines[key] = InferenceEngine(model, self.settings.max_batch_tokens)
        return self.engines[key]

    def scan(self, texts: list[str], options: ScanOptions, count_lookups: bool = True) -> list[TextResult]:
        """Results for `texts`, in order; repeated texts are scanned once. Texts over the size limit (which
        a producer never sends, but any broker client could) become error results."""
        limit = self.settings.max_text_chars
        if any(len(t) > limit for t in texts):
            keep = [t for t in texts if len(t) <= limit]
            done = iter(self.scan(keep, options, count_lookups))
            too_long = TextResult(valid=False, error=f"text is over the limit of {limit} characters")
            return [next(done) if len(t) <= limit else too_long for t in texts]
        unique = list(dict.fromkeys(texts))
        plans = {t: plan_text(t, options) for t in unique}
        served: dict[str, ServedModel] = {}
        errors: dict[str, str] = {}
        scores: dict[str, dict[str, MLScore]] = {t: {} for t in unique}
        from_cache: dict[str, bool] = {t: True for t in unique}
        wanted = {name: [t for t in unique if name in plans[t].needs_ml] for name in options.scanners}
        for name, group in wanted.items():
            if not group:
                continue
            engine = self._engine_or_error(name, options, errors)
            if engine is None:
                continue
            served[name] = engine.model.served()
            found = self._run_scanner(name, engine, group, options, errors, from_cache, count_lookups)
            for text, score in found.items():
                scores[text][name] = score
        by_text = {t: assemble(t, options, plans[t], scores[t], served, errors,
                               cached=bool(scores[t]) and from_cache[t]) for t in unique}
        metrics.BATCH_TEXTS.observe(len(texts))
        return [by_text[t] for t in texts]

    def _engine_or_error(self, name: str, options: ScanOptions, errors: dict[str, str]) -> InferenceEngine | None:
        breaker = self.breakers.setdefault((name, options.variant.value), CircuitBreaker())
        if not breaker.allow():
            errors[name] = "circuit open after repeated model failures"
            return None
        try:
            return self.engine(name, options.variant.value)
        except ShieldError as exc:
            breaker.record(False)
            errors[name] = str(exc)
            metrics.ERRORS.labels("model_load").inc()
            log.warning("%s/%s unavailable: %s", name, options.variant.value, exc)
            return None

    def _run_scanner(self, name: str, engine: InferenceEngine, group: list[str], options: ScanOptions,
                     errors: dict[str, str], from_cache: dict[str, bool],
                     count_lookups: bool = True) -> dict[str, MLScore]:
        model, window = engine.model.ref, engine.model.window
        keys = ml_cache_keys(name, model, window, group)
        found: dict[str, MLScore] = {}
        if self.cache is not None:
            for text, raw in zip(group, self.cache.get_many(keys, count=count_lookups)):
                if raw is None:
                    continue
                try:
                    found[text] = MLScore.model_validate_json(raw)
                except ValueError:  # a damaged entry is a miss; the fresh score below overwrites it
                    metrics.ERRORS.labels("cache_corrupt").inc()
                    log.warning("unreadable cache entry for a %s text: treated as a miss and replaced", name)
        metrics.CACHE_LOOKUPS.labels("hit").inc(len(found))
        misses = [t for t in group if t not in found]
        metrics.CACHE_LOOKUPS.labels("miss").inc(len(misses))
        metrics.TEXTS.labels("cache").inc(len(found))
        if not misses:
            return found
        breaker = self.breakers[(name, options.variant.value)]
        started = time.perf_counter()
        try:
            fresh = engine.score(misses)
        except Exception as exc:  # onnxruntime errors are not a typed hierarchy
            breaker.record(False)
            errors[name] = f"inference failed: {exc}"
            metrics.ERRORS.labels("inference").inc()
            log.warning("%s inference failed: %s", name, exc)
            return found
        breaker.record(True)
        metrics.INFERENCE_SECONDS.labels(name, options.variant.value).observe(time.perf_counter() - started)
        metrics.TEXTS.labels("inference").inc(len(misses))
        for text in misses:
            from_cache[text] = False
        new = dict(zip(misses, fresh))
        if self.cache is not None:
            key_of = dict(zip(group, keys))
            evicted = self.cache.set_many([(key_of[t], s.model_dump_json().encode()) for t, s in new.items()])
            metrics.CACHE_EVICTIONS.inc(evicted)
        found.update(new)
        return found
