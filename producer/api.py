"""Python API for notebooks and pipelines: scan an iterable of texts or records, iterate results in order.

    from llm_shield.producer import Scanner
    with Scanner(scanners=["prompt_injection", "secrets"]) as scanner:
        for result in scanner.scan(["hello", "ignore previous instructions"]):
            print(result.valid, result.risk_score)

With no broker (argument or SHIELD_REDIS_URL) it starts the embedded default for the `with` block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any

from llm_shield.config import HybridMode, Variant
from llm_shield.errors import ConfigError
from llm_shield.contract import OutputRow, ScanOptions
from llm_shield.settings import ShieldSettings, get_settings

from llm_shield.producer.job import ScanJob
from llm_shield.producer.readers import InputRecord, _check_text, _field_id, _field_text
from llm_shield.producer.runner import check_models_exist, make_cache

API_URI = "<api>"


class Scanner:
    """A connection to workers (a cluster's, or an embedded one) that scans iterables of texts."""

    def __init__(self, *, scanners: Iterable[str] = ("prompt_injection",), variant: Variant | str = Variant.int8,
                 mode: HybridMode | str = HybridMode.hybrid, thresholds: Mapping[str, float] | None = None,
                 broker: str | None = None, batch_size: int | None = None,
                 settings: ShieldSettings | None = None, **options: Any) -> None:
        from llm_shield.checks import check_broker_url, check_positive, check_scanners, scan_options
        from llm_shield.thresholds import calibrated_thresholds

        self.settings = settings or get_settings()
        scanners = check_scanners([scanners] if isinstance(scanners, str) else scanners)
        try:
            variant, mode = Variant(variant), HybridMode(mode)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if thresholds is None:  # `llm-shield models calibrate` results, when there are any for these models
            thresholds = calibrated_thresholds(self.settings, variant, scanners)
        self.options = scan_options(scanners=scanners, variant=variant, mode=mode, thresholds=dict(thresholds),
                                    **options)
        self.broker = check_broker_url(broker, flag="broker") if broker else check_broker_url(
            self.settings.redis_url_value(), flag="SHIELD_REDIS_URL")
        self.batch_size = check_positive(batch_size, "batch_size")
        self._stack = ExitStack()
        self._url: str | None = None

    def __enter__(self) -> "Scanner":
        if self.broker is None:
            from llm_shield.producer.embedded import EmbeddedCluster

            check_models_exist(self.options, self.settings)
            self._url = self._stack.enter_context(EmbeddedCluster(self.settings, self.options.variant))
        else:
            self._url = self.broker
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the embedded services, if any."""
        self._stack.close()
        self._url = None

    def _job(self) -> ScanJob:
        if self._url is None:
            raise RuntimeError("use the Scanner in a `with` block (or call __enter__) before scanning")
        return ScanJob(self._url, self.options, self.settings, cache=make_cache(self.settings, self._url),
                       batch_size=self.batch_size)

    def scan(self, texts: Iterable[str]) -> Iterator[OutputRow]:
        """One result per text, in order (ids are `<api>:<index>`)."""
        limit = self.settings.max_text_chars

        def records() -> Iterator[InputRecord]:
            for i, text in enumerate(texts):
                source = {"uri": API_URI, "row": i}
                problem = "text is not a string" if not isinstance(text, str) else _check_text(text, limit)
                yield InputRecord(id=f"{API_URI}:{i}", source=source, text=None if problem else text, error=problem)

        return self._job().run(records())

    def scan_records(self, records: Iterable[Mapping[str, Any]], text_field: str = "text",
                     id_field: str | None = None) -> Iterator[OutputRow]:
        """One result per mapping, in order; the text (and optional id) are read at dotted paths."""
        limit = self.settings.max_text_chars

        def inputs() -> Iterator[InputRecord]:
            for i, record in enumerate(records):
                source = {"uri": API_URI, "row": i}
                rid = f"{API_URI}:{i}"
                id_problem = None
                if id_field:  # like the CLI: a row without its own id is an error row under its positional id
                    own, id_problem = _field_id(record, id_field, "row")
                    rid = own if own is not None else rid
                text, problem = _field_text(record, text_field, "row")
                problem = id_problem or problem or _check_text(text or "", limit)
                yield InputRecord(id=rid, source=source, text=None if problem else text, error=problem)

        return self._job().run(inputs())
