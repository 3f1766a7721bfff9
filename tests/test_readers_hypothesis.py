"""Property tests: arbitrary bytes as .jsonl / .txt / .csv (plain or gzip) never crash a reader or lose a row."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llm_shield.producer import readers
from llm_shield.producer.readers import iter_records

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Fragments that hit the interesting paths: line ends, quotes, JSON syntax, bad UTF-8, NUL, BOM.
FRAGMENTS = st.sampled_from([
    b"\n", b"\r\n", b"\r", b'"', b",", b"\t", b"{", b"}", b"[", b"]", b":", b"\\", b"\\u0000", b"\\ud800",
    b'{"text": "hi"}', b'{"text": ""}', b'{"text": 1}', b'{"text": null}', b'{"id": 3, "text": "x"}', b"text,id",
    b'"a\nb"', b"\xff", b"\xc3", b"\xc3\xa9", b"\xe2\x82", b"\x00", b"\xef\xbb\xbf", b"  ", b"null", b"1e999",
    b"x" * 40, "é€😀".encode(),
])
DATA = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(FRAGMENTS, st.binary(max_size=12)), max_size=40).map(b"".join),
)


def physical_lines(data: bytes) -> list[bytes]:
    """The independent rule: split at \\n; the empty piece after a final \\n is not a line."""
    parts = data.split(b"\n")
    return parts[:-1] if parts[-1] == b"" else parts


def read(data: bytes, suffix: str, compress: bool, **kw) -> list[readers.InputRecord]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"in{suffix}{'.gz' if compress else ''}"
        path.write_bytes(gzip.compress(data) if compress else data)
        records = list(iter_records([str(path)], **kw))
        for r in records:
            assert (r.text is None) != (r.error is None)
            assert r.id.startswith(str(path) + ":") or kw.get("id_field")
            r.model_dump_json()  # every record can be sent on
        return records


def plain(data: bytes, compress: bool) -> None:
    # a plain file that happens to start with the gzip magic is read as (corrupt) gzip: tested elsewhere
    assume(compress or not data.startswith(b"\x1f\x8b"))


@SETTINGS
@given(data=DATA, compress=st.booleans(), limit=st.integers(min_value=1, max_value=60))
def test_text_one_record_per_line(data: bytes, compress: bool, limit: int) -> None:
    plain(data, compress)
    with mock.patch.object(readers, "_SLACK", 8):  # so the "skip a huge line in chunks" path runs too
        records = read(data, ".txt", compress, max_text_chars=limit)
    lines = physical_lines(data)
    assert len(records) == len(lines)
    assert [r.source["line"] for r in records] == list(range(1, len(lines) + 1))
    for n, (record, line) in enumerate(zip(records, lines), 1):
        if n == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        terminated = n < len(lines) or data.endswith(b"\n")
        line = line[:-1] if terminated and line.endswith(b"\r") else line  # only a \r\n line end goes
        if record.text is not None:
            assert record.text == line.decode("utf-8")
            assert len(record.text) <= limit
        else:
            try:
                expected_ok = "\x00" not in line.decode("utf-8") and len(line.decode("utf-8")) <= limit
            except UnicodeDecodeError:
                expected_ok = False
            assert not expected_ok, record.error


@SETTINGS
@given(data=DATA, compress=st.booleans(), limit=st.integers(min_value=1, max_value=60),
       id_field=st.sampled_from([None, "id"]))
def test_jsonl_one_record_per_line(data: bytes, compress: bool, limit: int, id_field: str | None) -> None:
    plain(data, compress)
    with mock.patch.object(readers, "_SLACK", 8):
        records = read(data, ".jsonl", compress, max_text_chars=limit, id_field=id_field)
    lines = physical_lines(data)
    assert len(records) == len(lines)
    assert [r.source["line"] for r in records] == list(range(1, len(lines) + 1))
    for n, (record, line) in enumerate(zip(records, lines), 1):
        if record.text is not None:
            if n == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            assert json.loads(line.decode("utf-8"))["text"] == record.text


@SETTINGS
@given(data=DATA, compress=st.booleans(), limit=st.integers(min_value=1, max_value=60),
       suffix=st.sampled_from([".csv", ".tsv"]), id_field=st.sampled_from([None, "id"]))
def test_csv_never_raises(data: bytes, compress: bool, limit: int, suffix: str, id_field: str | None) -> None:
    plain(data, compress)
    with mock.patch.object(readers, "_SLACK", 8):
        header = b"text\tid\n" if suffix == ".tsv" else b"text,id\n"
        records = read(header + data, suffix, compress, max_text_chars=limit, id_field=id_field)
    assert [r.source["row"] for r in records] == list(range(len(records)))
    lines = [r.source["line"] for r in records]
    assert lines == sorted(lines)  # a lone \r also ends a CSV line, so two rows can share a physical line
    assert len(records) <= len(physical_lines(data)) + data.count(b"\r")
