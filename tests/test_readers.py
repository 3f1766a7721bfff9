"""Input readers on local files and standard input: every format, gzip, edge cases, limits and ordering."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from llm_shield.producer.readers import InputRecord, detect_format, expand_inputs, iter_records
from llm_shield.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


def write(tmp_path: Path, name: str, data: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def read(inputs: list[str] | str, **kw) -> list[InputRecord]:
    return list(iter_records([inputs] if isinstance(inputs, str) else inputs, **kw))


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# ----------------------------------------------------------------------------------- detect_format


@pytest.mark.parametrize("uri,fmt", [
    ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"), ("a.json", "jsonl"), ("a.JSONL.GZ", "jsonl"),
    ("a.csv", "csv"), ("a.tsv", "csv"), ("a.csv.gz", "csv"), ("a.parquet", "parquet"), ("a.pq", "parquet"),
    ("a.parquet.gz", "parquet"), ("a.txt", "text"), ("a.log", "text"), ("a.log.gz", "text"), ("README", "text"),
    ("a.gz", "text"), ("-", "text"), ("s3://bucket/dir.csv/part-0.jsonl", "jsonl"), ("s3://b/x.csv.gz", "csv"),
    ("dir.jsonl/file", "text"),
])
def test_detect_format(uri: str, fmt: str) -> None:
    assert detect_format(uri) == fmt


def test_unknown_format_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", "x\n")
    with pytest.raises(ConfigError, match="unknown input format 'xml'"):
        iter_records([path], fmt="xml")


# ----------------------------------------------------------------------------------- text


def test_text_lines_and_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "a.log", b"first\r\nsecond\n\nlast without newline")
    recs = read(path)
    assert [r.text for r in recs] == ["first", "second", "", "last without newline"]
    assert [r.id for r in recs] == [f"{path}:{n}" for n in (1, 2, 3, 4)]
    assert [r.source for r in recs] == [{"uri": path, "line": n} for n in (1, 2, 3, 4)]
    assert all(r.error is None for r in recs)


def test_text_line_semantics(tmp_path: Path) -> None:
    assert read(write(tmp_path, "empty.txt", b"")) == []
    assert [r.text for r in read(write(tmp_path, "one.txt", b"a\n"))] == ["a"]  # no record after the final \n
    assert [r.text for r in read(write(tmp_path, "blank.txt", b"\n"))] == [""]
    assert [r.text for r in read(write(tmp_path, "two.txt", b"a\n\n"))] == ["a", ""]
    # only the line end is stripped: other whitespace and a lone \r stay
    assert [r.text for r in read(write(tmp_path, "ws.txt", b"  a \t\r\nb\rc\r\n\r"))] == ["  a \t", "b\rc", "\r"]


def test_text_bad_lines_become_error_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.txt", b"ok\nbad \xff byte\nnul\x00here\n" + b"x" * 50 + b"\nend\n")
    recs = read(path, max_text_chars=20)
    assert len(recs) == 5
    assert recs[0].text == "ok"
    assert recs[1].text is None and recs[1].error == "line 2: not valid UTF-8 (byte 0xff at offset 4)"
    assert recs[2].error == "line 3: text contains NUL bytes"
    assert recs[3].error == "line 4: text is 50 characters, over the limit of 20 (SHIELD_MAX_TEXT_CHARS)"
    assert recs[3].text is None
    assert recs[4].text == "end"


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    assert [r.text for r in read(write(tmp_path, "bom.txt", b"\xef\xbb\xbfhello\nworld\n"))] == ["hello", "world"]
    recs = read(write(tmp_path, "bom.jsonl", b'\xef\xbb\xbf{"text": "hi"}\n'))
    assert recs[0].text == "hi"


# ----------------------------------------------------------------------------------- JSONL


def test_jsonl_basic_and_nested_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "a.jsonl", jsonl(
        {"message": {"role": "user", "content": "hello"}, "messages": [{"content": "m0"}, {"content": "m1"}]},
        {"message": {"content": "world"}, "messages": [{"content": "only"}]},
    ))
    assert [r.text for r in read(path, text_field="message.content")] == ["hello", "world"]
    assert [r.text for r in read(path, text_field="messages.0.content")] == ["m0", "only"]
    assert [r.text for r in read(path, text_field="messages.-1.content")] == ["m1", "only"]
    recs = read(path, text_field="messages.1.content")
    assert recs[0].text == "m1" and recs[1].error == "line 2: field 'messages.1.content' is missing"


def test_jsonl_literal_dotted_key_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "a.jsonl", jsonl({"a.b": "literal", "a": {"b": "nested"}}))
    assert read(path, text_field="a.b")[0].text == "literal"


def test_jsonl_id_field(tmp_path: Path) -> None:
    path = write(tmp_path, "a.jsonl", jsonl(
        {"id": "x-1", "text": "a"}, {"id": 7, "text": "b"}, {"meta": {"id": "n"}, "id": "x-3", "text": "c"},
        {"text": "no id"}, {"id": None, "text": "null id"}, {"id": [1], "text": "list id"},
    ))
    recs = read(path, id_field="id")
    assert [r.id for r in recs[:3]] == ["x-1", "7", "x-3"]
    assert [r.text for r in recs[:3]] == ["a", "b", "c"]
    assert recs[3].id == f"{path}:4" and recs[3].error == "line 4: id field 'id' is missing"
    assert recs[4].error == "line 5: id field 'id' is null"
    assert recs[5].error == "line 6: id field 'id' is an array, not a string or number"
    assert read(path, id_field="meta.id")[2].id == "n"


def test_jsonl_bad_rows_become_error_rows(tmp_path: Path) -> None:
    lines = [
        b'{"text": "good"}',
        b'{"text": "a" "b"}',
        b"[1, 2]",
        b'{"other": 1}',
        b'{"text": 42}',
        b'{"text": null}',
        b"",
        b'{"text": "bad \xc3\x28"}',
        b'{"text": "nul \\u0000"}',
        b'{"text": "lone \\ud800"}',
        b'{"text": "' + b"y" * 30 + b'"}',
        b"   ",
        b'"just a string"',
        b"[" * 100_000,
        b'{"text": ""}',
        b'{"text": {"nested": true}}',
        b'{"text": "\\ud83d\\ude00 pair"}',
        b'{"text": "last"}',
    ]
    path = write(tmp_path, "bad.jsonl", b"\n".join(lines))  # no final newline
    recs = read(path, max_text_chars=25)
    assert len(recs) == len(lines)
    errors = {int(r.source["line"]): r.error for r in recs}
    assert errors[1] is None and recs[0].text == "good"
    assert errors[2] == "line 2: invalid JSON: Expecting ',' delimiter (col 14)"
    assert errors[3] == "line 3: expected a JSON object, found an array"
    assert errors[4] == "line 4: field 'text' is missing"
    assert errors[5] == "line 5: field 'text' is a number, not a string"
    assert errors[6] == "line 6: field 'text' is null"
    assert errors[7] == "line 7: empty line (expected a JSON object)"
    assert errors[8] == "line 8: not valid UTF-8 (byte 0xc3 at offset 14)"
    assert errors[9] == "line 9: text contains NUL bytes"
    assert errors[10].startswith("line 10: text contains an unpaired surrogate (U+D800")
    assert errors[11] == "line 11: text is 30 characters, over the limit of 25 (SHIELD_MAX_TEXT_CHARS)"
    assert errors[12] == "line 12: empty line (expected a JSON object)"
    assert errors[13] == "line 13: expected a JSON object, found a string"
    assert errors[14].startswith("line 14: invalid JSON")
    assert errors[15] is None and recs[14].text == ""
    assert errors[16] == "line 16: field 'text' is an object, not a string"
    assert errors[17] is None and recs[16].text == "\U0001F600 pair"
    assert recs[-1].text == "last"
    for r in recs:  # error rows keep no text, and every record serializes
        assert (r.text is None) == (r.error is not None)
        r.model_dump_json()
    assert [r.id for r in recs] == [f"{path}:{n}" for n in range(1, len(lines) + 1)]


def test_jsonl_crlf(tmp_path: Path) -> None:
    path = write(tmp_path, "crlf.jsonl", b'{"text": "a"}\r\n{"text": "b"}\r\n')
    assert [r.text for r in read(path)] == ["a", "b"]


# ----------------------------------------------------------------------------------- CSV


def test_csv_quoting_multiline_and_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", 'id,text,source\r\n1,"hello, world",web\r\n2,"line one\nline ""two""",api\r\n'
                                    '3,plain,cli\r\n')
    recs = read(path)
    assert [r.text for r in recs] == ["hello, world", 'line one\nline "two"', "plain"]
    assert [r.id for r in recs] == [f"{path}:0", f"{path}:1", f"{path}:2"]
    assert [r.source for r in recs] == [{"uri": path, "row": 0, "line": 2}, {"uri": path, "row": 1, "line": 3},
                                        {"uri": path, "row": 2, "line": 5}]
    assert [r.id for r in read(path, id_field="id")] == ["1", "2", "3"]


def test_csv_column_option_and_tsv(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", "id,prompt\n1,hi\n")
    assert read(path, csv_column="prompt")[0].text == "hi"
    assert read(path, text_field="prompt")[0].text == "hi"
    tsv = write(tmp_path, "a.tsv", "id\tprompt\n1\thello, world\n")
    assert read(tsv, csv_column="prompt")[0].text == "hello, world"
    piped = read("-", fmt="tsv", csv_column="prompt", stdin=io.BytesIO(b"id\tprompt\n1\tx\n"))
    assert piped[0].text == "x"


def test_csv_bad_rows_become_error_rows(tmp_path: Path) -> None:
    data = (b"id,text,source\n"
            b"1,ok,a\n"
            b"2,too,many,fields\n"
            b"3,short\n"
            b"\n"  # blank: skipped, not a row
            b"4,bad \xff byte,a\n"
            b"5,nul\x00,a\n"
            b"6,,empty\n"
            b'7,"' + b"z" * 40 + b'",a\n'
            b"8,last,a")
    path = write(tmp_path, "bad.csv", data)
    recs = read(path, max_text_chars=30, id_field="id")
    assert [r.source["row"] for r in recs] == list(range(8))
    assert recs[0].text == "ok" and recs[0].id == "1"
    assert recs[1].error == "line 3: expected 3 fields, found 4"
    assert recs[2].error == "line 4: expected 3 fields, found 2"
    assert recs[3].error == "line 6: not valid UTF-8 (byte 0xff in column 'text')"
    assert recs[4].error == "line 7: text contains NUL bytes"
    assert recs[5].text == "" and recs[5].error is None
    assert recs[6].error == "line 9: text is 40 characters, over the limit of 30 (SHIELD_MAX_TEXT_CHARS)"
    assert recs[7].text == "last"


def test_csv_missing_column_stops_before_any_row(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", "id,prompt\n1,a\n2,b\n")
    with pytest.raises(ConfigError, match=r"column 'text' is not in the CSV header \(columns: 'id', 'prompt'\); "
                                          "choose one with --text-field"):
        read(path)
    with pytest.raises(ConfigError, match="id column 'key' is not in the CSV header"):
        read(path, text_field="prompt", id_field="key")


def test_csv_stray_quote_does_not_swallow_the_rows_after_it(tmp_path: Path) -> None:
    rows = ["id,text"] + [f"{i},row {i}" for i in range(1000)]
    rows[501] = '500,"stray quote here'  # never closed
    path = write(tmp_path, "s.csv", "\n".join(rows) + "\n")
    recs = read(path, id_field="id")
    assert len(recs) == 1000  # one row out per row in: nothing merged
    assert recs[500].error is not None and recs[500].source["line"] == 502
    assert [r.text for r in recs[501:]] == [f"row {i}" for i in range(501, 1000)]
    assert all(r.error is None for r in recs[:500])


def test_csv_header_only_empty_and_bom(tmp_path: Path) -> None:
    assert read(write(tmp_path, "h.csv", "id,text\n")) == []
    assert read(write(tmp_path, "e.csv", "")) == []
    assert read(write(tmp_path, "bom.csv", b"\xef\xbb\xbftext,id\nhi,1\n"))[0].text == "hi"


def test_csv_runaway_quote_is_bounded(tmp_path: Path) -> None:
    # an unclosed quote would swallow the rest of the file; the field size limit stops it with an error row
    path = write(tmp_path, "q.csv", 'text\n"never closed\n' + "more text\n" * 300_000)
    recs = read(path, max_text_chars=50)
    assert recs[0].error is not None and recs[0].source["line"] == 2
    assert "or a quote is not closed" in recs[0].error
    assert all(r.text == "more text" for r in recs[1:])  # parsing resumes on the next line
    assert recs[-1].source["line"] == 300_002


# ----------------------------------------------------------------------------------- Parquet


def write_parquet(path: Path, table: dict, row_group_size: int | None = None) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(table), path, row_group_size=row_group_size)
    return str(path)


def test_parquet_rows_nested_nulls_and_ids(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "a.parquet", {
        "id": ["a", "b", "c", "d"],
        "text": ["hello", None, "", "x" * 12],
        "msg": [{"content": "m0"}, {"content": None}, None, {"content": "m3"}],
    })
    recs = read(path, max_text_chars=10)
    assert [r.text for r in recs] == ["hello", None, "", None]
    assert recs[1].error == "row 1: column 'text' is null"
    assert recs[3].error == "row 3: text is 12 characters, over the limit of 10 (SHIELD_MAX_TEXT_CHARS)"
    assert [r.id for r in recs] == [f"{path}:{n}" for n in range(4)]
    assert recs[0].source == {"uri": path, "row": 0}
    nested = read(path, text_field="msg.content", id_field="id")
    assert [r.text for r in nested] == ["m0", None, None, "m3"]
    assert [r.id for r in nested] == ["a", "b", "c", "d"]
    assert nested[1].error == "row 1: column 'msg.content' is null"
    assert nested[2].error == "row 2: column 'msg.content' is missing"


def test_parquet_many_batches_keep_order(tmp_path: Path) -> None:
    n = 5000
    path = write_parquet(tmp_path / "big.pq", {"text": [f"t{i}" for i in range(n)]}, row_group_size=700)
    recs = read(path)
    assert [r.text for r in recs] == [f"t{i}" for i in range(n)]
    assert [r.source["row"] for r in recs] == list(range(n))


def test_parquet_missing_column_and_non_string(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "a.parquet", {"n": [1, 2, 3]})
    recs = read(path)
    assert len(recs) == 3 and all("column 'text' is not in the file (columns: 'n')" in r.error for r in recs)
    assert read(path, text_field="n")[0].error == "row 0: column 'n' is a number, not a string"


def test_parquet_gz_and_stdin(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "a.parquet", {"text": ["p", "q"]})
    data = Path(path).read_bytes()
    gz = write(tmp_path, "a.parquet.gz", gzip.compress(data))
    assert [r.text for r in read(gz)] == ["p", "q"]
    assert [r.text for r in read("-", fmt="parquet", stdin=io.BytesIO(data))] == ["p", "q"]


def test_not_a_parquet_file_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.parquet", b"this is not parquet\n")
    with pytest.raises(InputError, match=r"^cannot read .*bad\.parquet: not a readable Parquet file"):
        read(path)


# ----------------------------------------------------------------------------------- gzip, stdin


def test_gzip_by_name_and_by_magic(tmp_path: Path) -> None:
    payload = jsonl({"text": "a"}, {"text": "b"}).encode()
    by_name = write(tmp_path, "a.jsonl.gz", gzip.compress(payload))
    by_magic = write(tmp_path, "b.jsonl", gzip.compress(payload))  # compressed though the name says not
    plain_gz = write(tmp_path, "c.jsonl.gz", payload)  # named .gz but plain: read as is
    for path in (by_name, by_magic, plain_gz):
        assert [r.text for r in read(path)] == ["a", "b"]
    csv_gz = write(tmp_path, "a.csv.gz", gzip.compress(b"text\nx\ny\n"))
    assert [r.text for r in read(csv_gz)] == ["x", "y"]
    log_gz = write(tmp_path, "a.log.gz", gzip.compress(b"l1\nl2"))
    assert [r.text for r in read(log_gz)] == ["l1", "l2"]
    multi = write(tmp_path, "m.txt.gz", gzip.compress(b"one\n") + gzip.compress(b"two\n"))  # two members
    assert [r.text for r in read(multi)] == ["one", "two"]
    assert read(write(tmp_path, "empty.txt.gz", gzip.compress(b""))) == []


def test_corrupt_or_truncated_gzip_is_an_input_error(tmp_path: Path) -> None:
    data = gzip.compress(b"line\n" * 10_000)
    truncated = write(tmp_path, "t.txt.gz", data[: len(data) // 2])
    with pytest.raises(InputError, match=r"^cannot read .*t\.txt\.gz: gzip data is corrupt or truncated"):
        read(truncated)
    corrupt = write(tmp_path, "c.txt.gz", data[:10] + b"\x00" * 40 + data[50:])
    with pytest.raises(InputError, match="gzip data is corrupt or truncated"):
        read(corrupt)


def test_stdin(tmp_path: Path) -> None:
    recs = read("-", stdin=io.BytesIO(b"a\nb\n"))
    assert [(r.id, r.text, r.source) for r in recs] == [("-:1", "a", {"uri": "-", "line": 1}),
                                                        ("-:2", "b", {"uri": "-", "line": 2})]
    gz = io.BytesIO(gzip.compress(jsonl({"text": "z"}).encode()))
    assert read("-", fmt="jsonl", stdin=gz)[0].text == "z"
    assert read("-", fmt="csv", stdin=io.BytesIO(b"text\nc\n"))[0].text == "c"
    stream = io.BytesIO(b"x\n")
    read("-", stdin=stream)
    assert not stream.closed  # the caller's stream is left open


def test_stdin_without_peek_or_short_reads() -> None:
    class Trickle(io.RawIOBase):  # one byte per read, like a slow pipe
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            if not self.data:
                return 0
            b[0] = self.data[0]
            self.data = self.data[1:]
            return 1

    payload = gzip.compress(b"slow\npipe\n")
    assert [r.text for r in read("-", stdin=Trickle(payload))] == ["slow", "pipe"]


def test_default_stdin_is_sys_stdin(tmp_path: Path) -> None:
    code = ("import sys; from llm_shield.producer.readers import iter_records; "
            "print([r.text for r in iter_records(['-'])])")
    out = subprocess.run([sys.executable, "-c", code], input=b"p\nq\n", capture_output=True, cwd=REPO, check=True)
    assert out.stdout.decode().strip() == "['p', 'q']"


# ----------------------------------------------------------------------------------- inputs


def test_expand_inputs_local_errors(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "x\n")
    b = write(tmp_path, "b.txt", "y\n")
    assert expand_inputs([b, "-", a]) == [b, "-", a]
    with pytest.raises(InputError, match=r"^cannot read .*nope\.txt: no such file or directory$"):
        expand_inputs([a, str(tmp_path / "nope.txt")])
    with pytest.raises(InputError, match=r"^cannot read .*: it is a directory"):
        expand_inputs([str(tmp_path)])
    with pytest.raises(InputError, match="given more than once"):
        expand_inputs([a, a])
    with pytest.raises(InputError, match="given more than once"):
        expand_inputs(["-", "-"])
    with pytest.raises(InputError, match=r"unsupported URI scheme gs://"):
        expand_inputs(["gs://bucket/key.jsonl"])


def test_unreadable_file(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = write(tmp_path, "locked.txt", "x\n")
    os.chmod(path, 0)
    with pytest.raises(InputError, match="permission denied"):
        expand_inputs([path])


def test_inputs_are_checked_before_any_record(tmp_path: Path) -> None:
    good = write(tmp_path, "a.txt", "x\n")
    with pytest.raises(InputError):
        iter_records([good, str(tmp_path / "missing.txt")])  # raised by the call, not on iteration


def test_order_across_inputs_and_formats(tmp_path: Path) -> None:
    a = write(tmp_path, "a.jsonl", jsonl({"text": "a1"}, {"text": "a2"}))
    b = write(tmp_path, "b.txt", "b1\nb2\n")
    c = write(tmp_path, "c.csv", "text\nc1\nc2\n")
    recs = read([c, a, b])
    assert [r.text for r in recs] == ["c1", "c2", "a1", "a2", "b1", "b2"]
    assert len({r.id for r in recs}) == 6
    recs2 = read([c, a, b])
    assert [r.id for r in recs] == [r.id for r in recs2]  # stable across runs


def test_fmt_overrides_the_name(tmp_path: Path) -> None:
    path = write(tmp_path, "data.txt", jsonl({"text": "j"}))
    assert read(path, fmt="jsonl")[0].text == "j"
    assert read(path)[0].text == '{"text": "j"}'


def test_records_are_frozen_and_consistent() -> None:
    rec = InputRecord(id="x", source={"uri": "u", "line": 1}, text="t")
    with pytest.raises(Exception):
        rec.text = "other"  # type: ignore[misc]
    with pytest.raises(ValueError):
        InputRecord(id="x", source={}, text="t", error="both")
    with pytest.raises(ValueError):
        InputRecord(id="x", source={}, text=None)


# ----------------------------------------------------------------------------------- huge lines


def test_10mb_line_text_jsonl_and_csv(tmp_path: Path) -> None:
    big = "a" * (10 * 1024 * 1024)
    txt = write(tmp_path, "big.txt", f"before\n{big}\nafter\n")
    js = write(tmp_path, "big.jsonl", jsonl({"text": "before"}, {"text": big}, {"text": "after"}))
    for path, peak_limit in ((txt, 16 << 20), (js, 80 << 20)):
        tracemalloc.start()
        try:
            recs = read(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert [r.text for r in recs] == ["before", None, "after"]
        assert recs[1].error == (f"line 2: text is {len(big)} characters, over the limit of 1000000 "
                                 f"(SHIELD_MAX_TEXT_CHARS)")
        assert peak < peak_limit, (path, peak)
    csv_path = write(tmp_path, "big.csv", f"id,text\n1,before\n2,{big}\n3,after\n")
    tracemalloc.start()
    try:
        recs = read(csv_path, id_field="id")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(r.id, r.text) for r in recs] == [("1", "before"), (f"{csv_path}:1", None), ("3", "after")]
    assert recs[1].error.startswith("line 3: ") and recs[1].source == {"uri": csv_path, "row": 1, "line": 3}
    assert peak < 40 << 20, peak


def test_huge_line_is_skipped_in_chunks(tmp_path: Path) -> None:
    # far over the limit, a line is never held in memory: it is counted while skipped
    size = 30 * 1024 * 1024
    path = tmp_path / "huge.log"
    with open(path, "wb") as f:
        f.write(b"ok\n")
        for _ in range(size // (1 << 20)):
            f.write(b"\xc3\xa9" * (1 << 19))  # "é", 2 bytes each
        f.write(b"\r\nafter")
    tracemalloc.start()
    try:
        recs = read(str(path), max_text_chars=1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r.text for r in recs] == ["ok", None, "after"]
    assert recs[1].error == f"line 2: text is {size // 2} characters, over the limit of 1000 (SHIELD_MAX_TEXT_CHARS)"
    assert peak < 8 << 20, peak
    js = tmp_path / "huge.jsonl"
    with open(js, "wb") as f:
        f.write(b'{"text": "' + b"q" * size + b'"}\n{"text": "next"}\n')
    recs = read(str(js), max_text_chars=1000)
    assert recs[0].error.startswith("line 1: line is 31457293 bytes, too long")
    assert recs[1].text == "next"


# ----------------------------------------------------------------------------------- samples


def test_samples() -> None:
    chat = read(str(SAMPLES / "chat_logs.jsonl"), text_field="message.content", id_field="id")
    assert 35 <= len(chat) <= 45 and all(r.error is None for r in chat)
    assert len({r.id for r in chat}) == len(chat)
    assert any("ignore all previous instructions" in r.text.lower() for r in chat)
    prompts = read(str(SAMPLES / "prompts.csv"), csv_column="prompt", id_field="id")
    assert 20 <= len(prompts) <= 30 and all(r.error is None for r in prompts)
    log = read(str(SAMPLES / "app.log"))
    assert 25 <= len(log) <= 35 and all(r.error is None for r in log)
    assert any("sk-" in r.text for r in log)
    gz = read(str(SAMPLES / "prompts.jsonl.gz"))
    assert gz and all(r.error is None for r in gz)
    assert (SAMPLES / "prompts.jsonl.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_imports_without_onnxruntime_boto3_or_pyarrow() -> None:
    code = ("import sys\n"
            "for name in ('onnxruntime', 'boto3', 'pyarrow'):\n"
            "    sys.modules[name] = None  # importing it would fail\n"
            "import producer.readers, producer.sources\n"
            "from llm_shield.producer.readers import iter_records\n"
            "print(len(list(iter_records(['samples/app.log']))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 0
