"""Streaming input readers for `llm-shield scan INPUT...`: JSONL, CSV/TSV, plain text/logs and Parquet.

Inputs are local paths, `s3://bucket/key`, `s3://bucket/prefix/` (every object under it) or `-` (standard
input); any of them may be gzip-compressed (detected by the magic bytes, and `.gz` is ignored when the
format is guessed from the name). Everything streams: text formats are read one physical line at a time
from a buffered binary stream and decoded per line, Parquet one batch of rows at a time.

The contract, which the producer relies on to keep results in order:

* One record per input row, in input order, always: a row that cannot be scanned becomes a record whose
  `error` says why (`text` is then None) instead of being dropped or stopping the run. Only an input that
  cannot be opened or read at all raises `InputError` (before any record where it can be checked up
  front: missing files, directories, bad S3 URIs, missing buckets or keys).
* A row is a physical line (`\\n`-terminated; a last line without `\\n` counts, the "empty line" after a
  final `\\n` does not) for text and JSONL, a CSV record (which may span lines in quotes) for CSV, a
  row for Parquet. An empty input yields no records.
* Ids are `<uri>:<line>` for text/JSONL (1-based physical line), `<uri>:<row>` for CSV and Parquet
  (0-based data row), or the row's own `id_field` value when one is asked for. They are stable across
  runs; with `id_field`, uniqueness is up to the data (repeated values are passed through), and a row
  whose id is missing, null, empty or not a string/number is an error row under its positional id.

Edge cases:

* Empty text (an empty line in a text file, `""` in a field) is a valid record with `text == ""`; the
  scanners decide what it means (nothing to flag). A blank line in a JSONL file is an error row (it is not
  a JSON object); blank lines in a CSV file are skipped like `csv.DictReader` does.
* Text over `max_text_chars` characters -> error row "text is N characters, over the limit of M
  (SHIELD_MAX_TEXT_CHARS)", the text is not kept. A physical line far over the limit (more than
  4 bytes a character for text and CSV, 16 for JSONL, plus 1 MiB) is not even held in memory: it is
  skipped in chunks and counted.
* Text containing NUL characters -> error row "text contains NUL bytes". Text that cannot be encoded as
  UTF-8 (a lone surrogate from a JSON `\\ud800` escape) -> error row; it could not be sent to a worker.
* Bytes that are not UTF-8 -> error row "line N: not valid UTF-8 (byte 0x.. at offset ..)". A UTF-8 byte
  order mark at the start of an input is ignored. Lines end at `\\n`; a `\\r` before it is removed.
* JSONL: invalid JSON, a value that is not an object, a missing/null/non-string text field -> error rows.
  Fields are dotted paths (`message.content`, `messages.0.content`, `messages.-1.content`); a key that
  itself contains dots is matched first as is.
* CSV: the first non-blank row is the header; the column is `csv_column` or `text_field` (one the header
  lacks is a ConfigError before any row). A row with a different number of fields than the header or a
  malformed row -> error rows; a quote that is never closed (or that spans lines and leaves the wrong
  number of fields) makes its first line an error row and reading goes on with the next line, so a stray
  quote never merges the rows after it. TSV for `.tsv` names (or `fmt="tsv"`). Lines are split like `open(newline="")` does, so a
  lone `\\r` also ends a line. Raises `csv.field_size_limit()` (process-wide) to just over the text limit
  when it is lower: a quote that is never closed then costs at most that many characters of memory, and
  the row is an error row ("a field is over N characters, or a quote is not closed").
* Parquet: the column is `text_field` (a top-level column, or a dotted path into a struct column);
  null -> error row; a column missing from the file -> an error row for every row. S3 objects, standard
  input and `.parquet.gz` are first copied to a temporary file (Parquet needs to seek).
"""

from __future__ import annotations

import csv
import json
import posixpath
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import from_json

from llm_shield.producer.sources import (
    STDIN,
    cannot_read,
    check_local,
    display,
    is_s3,
    open_input,
    open_seekable,
    parse_s3_uri,
    s3_check_object,
    s3_client,
    s3_list_prefix,
    unsupported_scheme,
)
from llm_shield.errors import ConfigError, InputError

#: What detect_format returns; `fmt=` also takes "tsv" (and a few aliases, see `normalize_format`).
FORMATS = ("jsonl", "csv", "text", "parquet")
_FORMAT_ALIASES = {
    "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl",
    "csv": "csv", "tsv": "tsv",
    "text": "text", "txt": "text", "log": "text",
    "parquet": "parquet", "pq": "parquet",
}
_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".tsv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}

LIMIT_ENV = "SHIELD_MAX_TEXT_CHARS"
_BOM = b"\xef\xbb\xbf"
_CONTINUATION = bytes(range(0x80, 0xC0))  # UTF-8 continuation bytes: the others start a character
_SKIP_CHUNK = 1 << 20
_SLACK = 1 << 20  # bytes a line may hold beyond its text (JSON envelope, other CSV fields)
_PARQUET_BATCH = 1024
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")
_INDEX = re.compile(r"-?[0-9]+", re.ASCII)
_MISSING: Any = object()


class InputRecord(BaseModel):
    """One row of input: its text to scan, or the error that keeps it from being scanned."""

    model_config = ConfigDict(frozen=True)

    id: str
    source: dict
    text: str | None
    error: str | None = None

    @model_validator(mode="after")
    def _text_or_error(self) -> "InputRecord":
        if (self.text is None) == (self.error is None):
            raise ValueError("a record has either a text or an error")
        return self


# ------------------------------------------------------------------------------------------ formats


def _base_name(uri: str) -> str:
    if is_s3(uri):
        uri = uri[len("s3://"):].partition("/")[2]
    return posixpath.basename(uri.replace("\\", "/")).lower()


def _strip_gz(name: str) -> str:
    return name[:-3] if name.endswith(".gz") else name


def detect_format(uri: str) -> str:
    """ "jsonl" | "csv" | "text" | "parquet" from the name (after dropping `.gz`); anything unknown is text."""
    if uri == STDIN:
        return "text"
    return _EXTENSIONS.get(posixpath.splitext(_strip_gz(_base_name(uri)))[1], "text")


def normalize_format(fmt: str) -> str:
    """A `--format` value as one of FORMATS or "tsv"; ConfigError for anything else."""
    try:
        return _FORMAT_ALIASES[fmt.strip().lower()]
    except KeyError:
        raise ConfigError(f"unknown input format {fmt!r} (choose jsonl, csv, tsv, text or parquet)") from None


def _is_tsv(uri: str) -> bool:
    return _strip_gz(_base_name(uri)).endswith(".tsv")


# ------------------------------------------------------------------------------------------ inputs


#: S3 objects this process has already listed or checked: expanding an expanded list again (the CLI
#: expands, then iter_records does) costs no HEAD request per object. A vanished object still fails when read.
_S3_SEEN: set[str] = set()
_S3_SEEN_MAX = 1_000_000


def _remember_s3(uris: list[str]) -> None:
    if len(_S3_SEEN) + len(uris) > _S3_SEEN_MAX:
        _S3_SEEN.clear()
    _S3_SEEN.update(uris)


def expand_inputs(inputs: list[str]) -> list[str]:
    """The inputs to read, in order, each checked to exist and be readable (InputError otherwise).

    `s3://bucket/prefix/` (trailing slash; `s3://bucket/` for a whole bucket) becomes the URIs of the
    objects under it, recursively, sorted by key, without "folder" marker keys; an empty prefix is an
    error. `-` is standard input. A local directory is an error, and so is an input given twice (its
    record ids would repeat).
    """
    out: list[str] = []
    client: Any = None
    for item in inputs:
        if item == STDIN:
            out.append(item)
            continue
        if not item:
            raise InputError("cannot read '': an input path is empty")
        if is_s3(item):
            _, key = parse_s3_uri(item)
            if client is None:
                try:
                    client = s3_client()
                except Exception as exc:  # a broken AWS config file, an unknown profile...
                    raise cannot_read(item, f"cannot set up an S3 client ({type(exc).__name__}: "
                                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
            if key == "" or key.endswith("/"):
                listed = s3_list_prefix(client, item)
                _remember_s3(listed)
                out.extend(listed)
            else:
                if item not in _S3_SEEN:
                    s3_check_object(client, item)
                    _remember_s3([item])
                out.append(item)
            continue
        scheme = unsupported_scheme(item)
        if scheme:
            raise cannot_read(item, f"unsupported URI scheme {scheme}:// (use a local path, s3://bucket/key, "
                                    f"s3://bucket/prefix/ or - for standard input)")
        check_local(item)
        out.append(item)
    seen: set[str] = set()
    for uri in out:
        if uri in seen:
            raise InputError(f"{display(uri)} is given more than once (each input may appear once, so that "
                             f"record ids stay unique)")
        seen.add(uri)
    return out


def iter_records(
    inputs: list[str],
    *,
    fmt: str | None = None,
    text_field: str = "text",
    id_field: str | None = None,
    csv_column: str | None = None,
    max_text_chars: int = 1_000_000,
    stdin: BinaryIO | None = None,
) -> Iterator[InputRecord]:
    """Every row of every input as an InputRecord, in order (see the module docstring for the rules).

    The inputs are expanded and checked when this is called (InputError before any record); the rows are
    read lazily as the iterator is consumed. `fmt` applies to every input (default: from each name; `-`
    defaults to text). `stdin` replaces `sys.stdin.buffer` for `-`.
    """
    chosen = normalize_format(fmt) if fmt else None
    if not text_field:
        raise ConfigError("the text field name is empty")
    if max_text_chars < 1:
        raise ConfigError(f"max_text_chars must be at least 1, not {max_text_chars}")
    uris = expand_inputs(list(inputs))
    return _records(uris, chosen, text_field, id_field, csv_column or text_field, max_text_chars, stdin)


def _records(uris: list[str], fmt: str | None, text_field: str, id_field: str | None, csv_column: str,
             max_chars: int, stdin: BinaryIO | None) -> Iterator[InputRecord]:
    client: Any = None  # one S3 client for every object (making one takes a while)
    for uri in uris:
        kind = fmt or detect_format(uri)
        name = display(uri)
        if client is None and is_s3(uri):
            client = s3_client()
        if kind == "parquet":
            with open_seekable(uri, stdin=stdin, client=client) as src:
                yield from _read_parquet(uri, name, src, text_field, id_field, max_chars)
            continue
        with open_input(uri, stdin=stdin, client=client) as stream:
            if kind == "jsonl":
                yield from _read_jsonl(name, stream, text_field, id_field, max_chars)
            elif kind in ("csv", "tsv"):
                delimiter = "\t" if kind == "tsv" or _is_tsv(uri) else ","
                yield from _read_csv(uri, name, stream, delimiter, csv_column, id_field, max_chars)
            else:
                yield from _read_text(name, stream, max_chars)


# ------------------------------------------------------------------------------------------ helpers


def _error(rid: str, source: dict, message: str) -> InputRecord:
    return InputRecord(id=rid, source=source, text=None, error=message)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    return f"a {type(value).__name__}"


def _lookup(container: Any, path: str) -> Any:
    """`container[path]`, else the dotted path walked through objects and arrays; _MISSING if absent."""
    if isinstance(container, dict) and path in container:
        return container[path]
    value = container
    for part in path.split("."):
        if isinstance(value, dict):
            if part not in value:
                return _MISSING
            value = value[part]
        elif isinstance(value, (list, tuple)) and _INDEX.fullmatch(part):
            i = int(part)
            if not -len(value) <= i < len(value):
                return _MISSING
            value = value[i]
        else:
            return _MISSING
    return value


def _unencodable(text: str) -> int | None:
    """Index of the first character UTF-8 cannot encode (a lone surrogate), else None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _check_text(text: str, max_chars: int) -> str | None:
    """Why `text` cannot be scanned, or None."""
    if len(text) > max_chars:
        return f"text is {len(text)} characters, over the limit of {max_chars} ({LIMIT_ENV})"
    if "\x00" in text:
        return "text contains NUL bytes"
    bad = _unencodable(text)
    if bad is not None:
        return f"text contains an unpaired surrogate (U+{ord(text[bad]):04X} at character {bad}), not valid Unicode"
    return None


def _field_text(container: Any, path: str, noun: str) -> tuple[str | None, str | None]:
    """(text, None) or (None, problem) for the text at `path`."""
    value = _lookup(container, path)
    if value is _MISSING:
        return None, f"{noun} {path!r} is missing"
    if value is None:
        return None, f"{noun} {path!r} is null"
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"{noun} {path!r} is not valid UTF-8 (byte 0x{value[exc.start]:02x} at offset {exc.start})"
    if not isinstance(value, str):
        return None, f"{noun} {path!r} is {_kind(value)}, not a string"
    return value, None


def _field_id(container: Any, path: str, noun: str) -> tuple[str | None, str | None]:
    """(id, None) or (None, problem) for the id at `path`."""
    value = _lookup(container, path)
    if value is _MISSING:
        return None, f"id {noun} {path!r} is missing"
    if value is None:
        return None, f"id {noun} {path!r} is null"
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"id {noun} {path!r} is {_kind(value)}, not a string or number"
    text = value if isinstance(value, str) else str(value)
    if not text:
        return None, f"id {noun} {path!r} is empty"
    if _unencodable(text) is not None or "\x00" in text:
        return None, f"id {noun} {path!r} is not valid text"
    return text, None


def _physical_lines(stream: BinaryIO, max_bytes: int) -> Iterator[tuple[bytes, int, int]]:
    """(line, size, chars) for each `\\n`-terminated line (the last may lack its `\\n`).

    `line` keeps its terminator. A line over `max_bytes` is not held: `line` is then only its first
    `max_bytes + 1` bytes, the rest is read in chunks and dropped; `size` is its full length in bytes and
    `chars` its number of UTF-8 lead bytes without the line end (its length in characters when it is
    valid UTF-8); `chars` is -1 for lines within the limit.
    """
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        if len(line) <= max_bytes:
            yield line, len(line), -1
            continue
        size = len(line)
        chars = len(line.translate(None, _CONTINUATION))
        last = line[-2:]
        while not last.endswith(b"\n"):
            chunk = stream.readline(_SKIP_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            chars += len(chunk.translate(None, _CONTINUATION))
            last = (last + chunk)[-2:]
        chars -= 2 if last == b"\r\n" else last.endswith(b"\n")
        yield line, size, chars


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith(b"\n"):
        return line[:-1]
    return line


def _utf8_problem(data: bytes, exc: UnicodeDecodeError, offset: int) -> str:
    return f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start + offset})"


# ------------------------------------------------------------------------------------------ text


def _read_text(name: str, stream: BinaryIO, max_chars: int, first: int = 1) -> Iterator[InputRecord]:
    max_bytes = 4 * max_chars + _SLACK  # over this, the text is surely over the limit
    for n, (line, size, chars) in enumerate(_physical_lines(stream, max_bytes), first):
        rid, source = f"{name}:{n}", {"uri": name, "line": n}
        bom = n == 1 and line.startswith(_BOM)
        if size > max_bytes:
            count = chars - bom
            yield _error(rid, source, f"line {n}: text is {count} characters, over the limit of {max_chars} "
                                      f"({LIMIT_ENV})")
            continue
        data = _strip_eol(line)
        offset = 0
        if bom:
            data, offset = data[len(_BOM):], len(_BOM)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield _error(rid, source, f"line {n}: {_utf8_problem(data, exc, offset)}")
            continue
        problem = _check_text(text, max_chars)
        if problem:
            yield _error(rid, source, f"line {n}: {problem}")
        else:
            yield InputRecord(id=rid, source=source, text=text)


# ------------------------------------------------------------------------------------------ JSONL


def _read_jsonl(name: str, stream: BinaryIO, text_field: str, id_field: str | None,
                max_chars: int, first: int = 1) -> Iterator[InputRecord]:
    max_bytes = 16 * max_chars + _SLACK  # room for \\uXXXX escapes and the rest of the object
    for n, (line, size, _) in enumerate(_physical_lines(stream, max_bytes), first):
        rid, source = f"{name}:{n}", {"uri": name, "line": n}
        record_id, text, problem = rid, None, None
        if size > max_bytes:
            problem = (f"line is {size} bytes, too long to hold a text within the limit of {max_chars} "
                       f"characters ({LIMIT_ENV})")
        else:
            offset = 0
            if n == 1 and line.startswith(_BOM):
                line, offset = line[len(_BOM):], len(_BOM)
            try:
                decoded = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                decoded, problem = "", _utf8_problem(line, exc, offset)
            if problem is None:
                record_id, text, problem = _jsonl_row(decoded, rid, text_field, id_field, max_chars)
        if problem:
            yield _error(record_id, source, f"line {n}: {problem}")
        else:
            yield InputRecord(id=record_id, source=source, text=text)


def _jsonl_row(line: str, rid: str, text_field: str, id_field: str | None,
               max_chars: int) -> tuple[str, str | None, str | None]:
    if not line.strip():
        return rid, None, "empty line (expected a JSON object)"
    try:
        obj = _parse_json(line)
    except json.JSONDecodeError as exc:
        return rid, None, f"invalid JSON: {exc.msg} (col {exc.colno})"
    except (ValueError, RecursionError) as exc:  # 5000-digit numbers, arrays nested thousands deep
        return rid, None, f"invalid JSON: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if not isinstance(obj, dict):
        return rid, None, f"expected a JSON object, found {_kind(obj)}"
    if id_field:
        own, problem = _field_id(obj, id_field, "field")
        if problem:
            return rid, None, problem
        rid = own  # type: ignore[assignment]
    text, problem = _field_text(obj, text_field, "field")
    if problem is None:
        problem = _check_text(text, max_chars)  # type: ignore[arg-type]
    return (rid, None, problem) if problem else (rid, text, None)


def _parse_json(line: str) -> Any:
    """`json.loads(line)`, mostly by pydantic_core's parser (four times faster, same values): json.loads itself
    parses what that one refuses (bad JSON, nesting over 200 deep, lone surrogates), so errors are its own."""
    try:
        return from_json(line)
    except ValueError:
        return json.loads(line)


# ------------------------------------------------------------------------------------------ CSV


class _CsvLines:
    """Decoded lines for `csv.reader`, split like `open(newline="")` does, tracking physical lines.

    Bytes that are not UTF-8 become lone surrogates (surrogateescape) and are reported per row. A line
    over `max_bytes` is cut there (its row becomes an error row). The pieces of the record being read are kept
    (`record`), so that a record the reader rejects can be read again from its second line (`resync`).
    """

    def __init__(self, stream: BinaryIO, max_bytes: int) -> None:
        self._lines = _physical_lines(stream, max_bytes)
        self._max_bytes = max_bytes
        self._pending: list[tuple[str, int]] = []  # a stack: (piece, physical line), next piece last
        self._line = 0  # physical lines fetched
        self.pieces = 0
        self.over = 0  # lines cut so far
        self.record: list[tuple[str, int]] = []  # pieces handed out since `start_record`

    @property
    def next_line(self) -> int:
        """Physical line the next piece starts on."""
        return self._pending[-1][1] if self._pending else self._line + 1

    def __iter__(self) -> "_CsvLines":
        return self

    def __next__(self) -> str:
        if not self._pending:
            line, size, _ = next(self._lines)
            self._line += 1
            if size > self._max_bytes:
                self.over += 1
                line = line[: self._max_bytes]
            if self._line == 1 and line.startswith(_BOM):
                line = line[len(_BOM):]
            text = line.decode("utf-8", "surrogateescape")
            pieces = _LONE_CR.split(text) if "\r" in text else [text]
            self._pending = [(p, self._line) for p in pieces if p][::-1] or [("", self._line)]
        piece = self._pending.pop()
        self.pieces += 1
        self.record.append(piece)
        return piece[0]

    def start_record(self) -> None:
        self.record = []

    def lines_in_record(self) -> int:
        return len({line for _, line in self.record})

    def resync(self) -> None:
        """Hand out again every piece of the current record after its first physical line."""
        if not self.record:
            return
        first = self.record[0][1]
        again = [piece for piece in self.record if piece[1] != first]
        self._pending.extend(reversed(again))
        self.record = []


def _columns(header: list[str]) -> str:
    names = [repr(display(h)) for h in header[:20]]
    return ", ".join(names) + (f", ... ({len(header)} in all)" if len(header) > 20 else "")


def _find_column(header: list[str], name: str) -> int | None:
    if name in header:
        return header.index(name)
    stripped = [h.strip() for h in header]
    if name.strip() in stripped:
        return stripped.index(name.strip())
    return None


def _csv_problem(exc: csv.Error, max_chars: int) -> str:
    message = str(exc)
    if "field larger than field limit" in message:
        limit = csv.field_size_limit()
        if limit <= max_chars + 2:
            return f"a field is over the limit of {max_chars} characters ({LIMIT_ENV}), or a quote is not closed"
        return f"a field is over {limit} characters, or a quote is not closed"
    return f"malformed CSV ({message})"


def _read_csv(uri: str, name: str, stream: BinaryIO, delimiter: str, column: str, id_field: str | None,
              max_chars: int) -> Iterator[InputRecord]:
    if csv.field_size_limit() < max_chars + 2:
        csv.field_size_limit(max_chars + 2)  # one over the limit still parses, so the message can say how long
    max_bytes = 4 * max_chars + _SLACK
    lines = _CsvLines(stream, max_bytes)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)  # strict: an unclosed quote is an error
    header: list[str] = []
    while not header:  # the first non-blank row
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise cannot_read(uri, f"malformed CSV header on line {lines.next_line - 1} ({exc})") from None
    if lines.over:
        raise cannot_read(uri, f"the CSV header is over {max_bytes} bytes")
    width = len(header)
    text_idx = _find_column(header, column)
    id_idx = _find_column(header, id_field) if id_field else None
    # a column the header lacks is a usage error, not an error row per line: stop before any row
    if text_idx is None:
        raise ConfigError(f"{name}: column {column!r} is not in the CSV header (columns: {_columns(header)}); "
                          "choose one with --text-field")
    if id_field and id_idx is None:
        raise ConfigError(f"{name}: id column {id_field!r} is not in the CSV header (columns: "
                          f"{_columns(header)}); choose one with --id-field")

    row = 0
    while True:
        lines.start_record()
        start, pieces, over = lines.next_line, lines.pieces, lines.over
        fields: list[str] = []
        problem = None
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if lines.pieces == pieces:  # nothing consumed: nothing left to read
                return
            problem = _csv_problem(exc, max_chars)
        if problem is None and not fields:
            continue  # a blank line
        if problem is None and len(fields) != width and lines.lines_in_record() > 1:
            problem = f"malformed CSV (a quote opened here spans {lines.lines_in_record()} lines and leaves " \
                      f"{len(fields)} fields, not {width})"
        if problem is not None and lines.lines_in_record() > 1:
            # a stray quote must not swallow the rows after it: this line is the error row, the next line
            # starts a record again
            lines.resync()
        rid, source = f"{name}:{row}", {"uri": name, "row": row, "line": start}
        text = None
        if problem is None and lines.over > over:
            problem = f"a line is over {max_bytes} bytes, too long for the limit of {max_chars} characters ({LIMIT_ENV})"
        if problem is None and len(fields) != width:
            problem = f"expected {width} fields, found {len(fields)}"
        if problem is None and id_idx is not None:
            own, problem = _field_id({id_field: fields[id_idx]}, id_field, "column")  # type: ignore[dict-item]
            rid = own or rid
        if problem is None:
            text = fields[text_idx]  # type: ignore[index]
            bad = _unencodable(text)
            if bad is not None:  # only undecodable bytes become surrogates here
                problem = f"not valid UTF-8 (byte 0x{ord(text[bad]) - 0xDC00:02x} in column {column!r})"
            else:
                problem = _check_text(text, max_chars)
        if problem:
            yield _error(rid, source, f"line {start}: {problem}")
        else:
            yield InputRecord(id=rid, source=source, text=text)
        row += 1


# ------------------------------------------------------------------------------------------ Parquet


def _read_parquet(uri: str, name: str, src: Any, text_field: str, id_field: str | None,
                  max_chars: int) -> Iterator[InputRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def failed(exc: BaseException) -> InputError:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return cannot_read(uri, f"not a readable Parquet file ({first})")

    try:
        pf = pq.ParquetFile(src)
        names = pf.schema_arrow.names
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise failed(exc) from None
    with pf:
        yield from _parquet_rows(pf, failed, name, names, text_field, id_field, max_chars)


def _parquet_rows(pf: Any, failed: Any, name: str, names: list[str], text_field: str, id_field: str | None,
                  max_chars: int) -> Iterator[InputRecord]:
    import pyarrow as pa

    def top(path: str) -> str | None:
        if path in names:
            return path
        head = path.split(".", 1)[0]
        return head if "." in path and head in names else None

    text_col = top(text_field)
    id_col = top(id_field) if id_field else None
    missing = None
    if text_col is None:
        missing = f"column {text_field!r} is not in the file (columns: {_columns(names)})"
    elif id_field and id_col is None:
        missing = f"id column {id_field!r} is not in the file (columns: {_columns(names)})"

    row = 0
    if missing:
        for group in range(pf.metadata.num_row_groups):
            for _ in range(pf.metadata.row_group(group).num_rows):
                yield _error(f"{name}:{row}", {"uri": name, "row": row}, f"row {row}: {missing}")
                row += 1
        return

    columns = list(dict.fromkeys(c for c in (text_col, id_col) if c))
    batches = pf.iter_batches(batch_size=_PARQUET_BATCH, columns=columns)
    while True:
        try:
            batch = next(batches)
            texts = batch.column(columns.index(text_col)).to_pylist()  # type: ignore[arg-type]
            ids = batch.column(columns.index(id_col)).to_pylist() if id_col else None
        except StopIteration:
            return
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise failed(exc) from None
        for i, value in enumerate(texts):
            rid, source = f"{name}:{row}", {"uri": name, "row": row}
            problem = None
            if ids is not None:
                own, problem = _field_id({id_col: ids[i]}, id_field, "column")  # type: ignore[arg-type,dict-item]
                rid = own or rid
            text = None
            if problem is None:
                text, problem = _field_text({text_col: value}, text_field, "column")
            if problem is None:
                problem = _check_text(text, max_chars)  # type: ignore[arg-type]
            if problem:
                yield _error(rid, source, f"row {row}: {problem}")
            else:
                yield InputRecord(id=rid, source=source, text=text)
            row += 1

