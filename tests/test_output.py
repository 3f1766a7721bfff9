"""The JSONL writer: its fast paths write exactly what serializing an OutputRow writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_shield.producer.output import ResultWriter
from llm_shield.config import DetectionMethod, Variant
from llm_shield.contract import ModelRef, OutputRow, ScannerResult, TextResult
from llm_shield.errors import InputError

ids = st.text(max_size=20)
sources = st.dictionaries(st.text(max_size=10), st.one_of(st.integers(), st.text(max_size=20), st.none(),
                                                          st.floats(),
                                                          st.lists(st.integers(), max_size=3)), max_size=4)
results = st.builds(
    TextResult,
    valid=st.booleans(),
    risk_score=st.floats(0, 1),
    scanners=st.dictionaries(st.sampled_from(["prompt_injection", "secrets"]), st.builds(
        ScannerResult, label=st.text(max_size=8), score=st.floats(0, 1), valid=st.booleans(),
        method=st.sampled_from(list(DetectionMethod)), heuristics=st.lists(st.text(max_size=8), max_size=2)),
        max_size=2),
    model=st.dictionaries(st.just("prompt_injection"), st.just(ModelRef(id="m", variant=Variant.int8,
                                                                       sha256="ab" * 32)), max_size=1),
    cached=st.booleans(),
    arm=st.one_of(st.none(), st.text(max_size=5)),
    error=st.one_of(st.none(), st.text(max_size=30)),
)


@settings(max_examples=200, deadline=None)
@given(record_id=ids, source=sources, result=results)
def test_spliced_lines_equal_serialized_rows(tmp_path_factory, record_id: str, source: dict,  # noqa: ANN001
                                             result: TextResult) -> None:
    path = tmp_path_factory.mktemp("out") / "rows.jsonl"
    writer = ResultWriter(str(path))
    writer.write_result(record_id, source, result)
    writer.write_result(record_id, source, result.model_dump(mode="json"))  # the same result as JSON data
    writer.close()
    line, again = path.read_bytes().splitlines(keepends=True)
    assert line == (OutputRow(id=record_id, source=source, **result.__dict__).model_dump_json() + "\n").encode()
    assert again == line
    row = json.loads(line)
    assert line.endswith(b"\n") and row["id"] == record_id and list(row)[:2] == ["id", "source"]


def test_existing_output_needs_resume_or_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": "1"}\n')
    with pytest.raises(InputError, match="--resume"):
        ResultWriter(str(out))
    assert out.read_text() == '{"id": "1"}\n'  # left as it was
