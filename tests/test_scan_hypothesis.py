"""Property: any texts through the worker's scan path give exactly one result each, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_shield.config import HybridMode
from llm_shield.contract import HEURISTIC_SCANNERS, ML_SCANNERS, ScanOptions
from llm_shield.settings import ShieldSettings
from llm_shield.worker.loader import ModelLoader
from llm_shield.worker.scan import BatchScanner

texts = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400), max_size=12)


@pytest.fixture(scope="module")
def scanner(model_settings: ShieldSettings) -> BatchScanner:
    small = model_settings.model_copy(update={"max_text_chars": 300})
    return BatchScanner(settings=small, loader=ModelLoader(small), cache=None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=texts, mode=st.sampled_from(list(HybridMode)))
def test_any_texts_give_one_result_each(scanner: BatchScanner, batch: list[str], mode: HybridMode) -> None:
    options = ScanOptions(scanners=(*ML_SCANNERS, *HEURISTIC_SCANNERS), mode=mode)
    results = scanner.scan(batch, options)
    assert len(results) == len(batch)
    for text, result in zip(batch, results):
        if len(text) > 300:
            assert result.error and not result.valid
        else:
            assert result.error is None
            assert set(result.scanners) == set(options.scanners)
            assert 0.0 <= result.risk_score <= 1.0
