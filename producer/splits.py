"""Distributed mode: plan an input into splits, keep a job's parts and markers in a folder or S3 prefix.

A split is a whole input, or, for an uncompressed local text or JSONL file larger than the split size, a
byte range that starts and ends at line boundaries. Planning reads such a file once, sequentially, to find
the boundaries and count the lines before each one (so a split's rows carry the same ids and line numbers
as a single-producer scan); that costs a fraction of a second per GB next to the scan itself. CSV (quoted
fields may span lines), gzip (not seekable) and Parquet inputs, and S3 objects, are one split each.

The output location holds::

    _manifest.json          the plan: inputs (with size and mtime/ETag), read and scan options, splits
    part-00000.jsonl        the result rows of split 0, in input order (written whole, then renamed/PUT)
    part-00000.done.json    its marker: rows, flagged, errors, bytes, sha256; the part is done iff it exists

Parts are named in input order; `merge_parts` concatenates them into one output identical to what
`llm-shield scan` writes for the same inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, Field, ValidationError

from llm_shield.contract import PartDone, ReadSpec, ScanOptions, SplitSpec
from llm_shield.errors import InputError, ScanIncompleteError
from llm_shield.producer.sources import (
    BUFFER_SIZE,
    GZIP_MAGIC,
    _s3_errors,
    cannot_read,
    display,
    is_s3,
    parse_s3_uri,
    s3_client,
    s3_reason,
)

MANIFEST = "_manifest.json"
MANIFEST_FORMAT = 1
#: Default split size: a few minutes of one CPU worker process on short rows.
DEFAULT_SPLIT_BYTES = 8 << 20
SPLITTABLE_FORMATS = ("jsonl", "text")
#: Parts are written under this prefix in the output folder, then renamed into place.
SCRATCH_PREFIX = ".shield-part-"
_PART = re.compile(r"^part-\d{5,}\.(jsonl|done\.json)$")


def part_name(index: int) -> str:
    return f"part-{index:05d}.jsonl"


def done_name(part: str) -> str:
    return part.removesuffix(".jsonl") + ".done.json"


class InputFingerprint(BaseModel):
    """An input as it was when the job was planned: a resumed job refuses inputs that changed since."""

    uri: str
    size: int
    version: str  # mtime (ns) of a local file, ETag of an S3 object


class Manifest(BaseModel):
    """The plan of a distributed job (`_manifest.json`)."""

    format: int = MANIFEST_FORMAT
    plan_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    inputs: list[InputFingerprint]
    fmt: str | None
    read: ReadSpec
    options: ScanOptions
    batch_size: int
    split_bytes: int
    splits: list[SplitSpec]

    def same_job(self, other: "Manifest") -> bool:
        keep = {"inputs", "fmt", "read", "options", "batch_size", "split_bytes"}
        return self.model_dump(include=keep, mode="json") == other.model_dump(include=keep, mode="json")


# ------------------------------------------------------------------------------------------ planning


def fingerprint(uri: str, client: Any = None) -> InputFingerprint:
    if is_s3(uri):
        bucket, key = parse_s3_uri(uri)
        try:
            head = (client or s3_client()).head_object(Bucket=bucket, Key=key)
        except _s3_errors() as exc:
            raise cannot_read(uri, s3_reason(exc)) from None
        return InputFingerprint(uri=uri, size=int(head["ContentLength"]), version=str(head.get("ETag", "")))
    try:
        st = os.stat(uri)
    except OSError as exc:
        raise cannot_read(uri, exc.strerror or str(exc)) from None
    return InputFingerprint(uri=uri, size=st.st_size, version=str(st.st_mtime_ns))


def _splittable(uri: str, kind: str, size: int, split_bytes: int) -> bool:
    if is_s3(uri) or kind not in SPLITTABLE_FORMATS or size <= split_bytes:
        return False
    with open(uri, "rb") as f:
        return f.read(len(GZIP_MAGIC)) != GZIP_MAGIC


def line_boundaries(path: str, split_bytes: int, block: int = 8 << 20) -> list[tuple[int, int]]:
    """(byte offset, line number) of each split's start: the first is (0, 1); each next one is the start of
    the first line that begins at or after the previous start + `split_bytes`. One sequential read."""
    starts = [(0, 1)]
    target = split_bytes
    offset = 0  # of the current block
    lines = 0  # newlines before the current block
    with open(path, "rb") as f:
        while True:
            data = f.read(block)
            if not data:
                break
            end = offset + len(data)
            search = max(0, target - offset)
            while search < len(data):
                j = data.find(b"\n", search)
                if j == -1:
                    break  # the boundary's newline is in a later block
                boundary = offset + j + 1
                starts.append((boundary, 1 + lines + data.count(b"\n", 0, j + 1)))
                target = boundary + split_bytes
                search = target - offset
            lines += data.count(b"\n")
            offset = end
    if starts[-1][0] >= offset and len(starts) > 1:
        starts.pop()  # a boundary at the very end starts nothing
    return starts


def plan_splits(uris: list[str], fmt: str | None, split_bytes: int,
                fingerprints: list[InputFingerprint]) -> list[SplitSpec]:
    """The splits of `uris`, in input order."""
    from llm_shield.producer.readers import detect_format

    splits: list[SplitSpec] = []
    for uri, print_ in zip(uris, fingerprints):
        kind = fmt or detect_format(uri)
        if _splittable(uri, kind, print_.size, split_bytes):
            starts = line_boundaries(uri, split_bytes)
            for k, (start, line) in enumerate(starts):
                end = starts[k + 1][0] if k + 1 < len(starts) else None
                n = len(splits)
                splits.append(SplitSpec(index=n, uri=uri, fmt=kind, start=start, end=end, first_line=line,
                                        part=part_name(n)))
        else:
            n = len(splits)
            splits.append(SplitSpec(index=n, uri=uri, fmt=kind, part=part_name(n)))
    return splits


# ------------------------------------------------------------------------------------------ reading a split


class _Range(io.RawIOBase):
    """The next `length` bytes of a binary file."""

    def __init__(self, f: BinaryIO, length: int | None) -> None:
        self._f, self._left = f, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        if self._left is not None:
            view = view[: self._left]
        n = self._f.readinto(view)
        if self._left is not None:
            self._left -= n
        return n


def read_split(split: SplitSpec, read: ReadSpec, max_chars: int, client: Any = None) -> Iterator:
    """The split's records (producer.readers.InputRecord), numbered as in a scan of the whole input."""
    from llm_shield.producer.readers import _read_jsonl, _read_text, _records

    if split.start == 0 and split.end is None:
        yield from _records([split.uri], split.fmt, read.text_field, read.id_field,
                            read.csv_column or read.text_field, max_chars, None)
        return
    try:
        f = open(split.uri, "rb")
    except OSError as exc:
        raise cannot_read(split.uri, exc.strerror or str(exc)) from None
    with f:
        f.seek(split.start)
        length = None if split.end is None else split.end - split.start
        stream = io.BufferedReader(_Range(f, length), BUFFER_SIZE)
        name = display(split.uri)
        if split.fmt == "jsonl":
            yield from _read_jsonl(name, stream, read.text_field, read.id_field, max_chars, first=split.first_line)
        else:
            yield from _read_text(name, stream, max_chars, first=split.first_line)


# ------------------------------------------------------------------------------------------ where parts live


class PartStore:
    """A folder or an S3 prefix holding a distributed job's manifest, parts and markers."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.s3 = is_s3(location)
        if self.s3:
            bucket, prefix = parse_s3_uri(location if location.endswith("/") else location + "/")
            self.bucket, self.prefix = bucket, prefix
            self._client: Any = None
        else:
            self.folder = Path(location)
            if self.folder.exists() and not self.folder.is_dir():
                raise InputError(f"{display(location)} is a file; distributed output goes to a folder (or an "
                                 f"s3://bucket/prefix/)")

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client()
        return self._client

    def describe(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}" if self.s3 else str(self.folder / name)

    def read(self, name: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        if self.s3:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"].read()
            except _s3_errors() as exc:
                if "NoSuchKey" in s3_reason(exc) or "404" in s3_reason(exc):
                    return None
                raise InputError(f"cannot read {self.describe(name)}: {s3_reason(exc)}") from None
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InputError(f"cannot read {self.describe(name)}: {exc.strerror}") from None

    def listing(self) -> dict[str, int]:
        """Size in bytes of the manifest, each part and each marker present, by name."""
        if self.s3:
            found: dict[str, int] = {}
            try:
                for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                                   Prefix=self.prefix):
                    found.update({o["Key"][len(self.prefix):]: int(o["Size"]) for o in page.get("Contents", ())})
            except _s3_errors() as exc:
                raise InputError(f"cannot list {self.location}: {s3_reason(exc)}") from None
            return {n: size for n, size in found.items() if n == MANIFEST or _PART.match(n)}
        if not self.folder.is_dir():
            return {}
        return {p.name: p.stat().st_size for p in self.folder.iterdir() if p.name == MANIFEST or _PART.match(p.name)}

    def names(self) -> set[str]:
        return set(self.listing())

    def write(self, name: str, data: bytes) -> None:
        """Write an object whole: readers see the old one or the new one, never a part of it."""
        if self.s3:
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data)
            except _s3_errors() as exc:
                raise InputError(f"cannot write {self.describe(name)}: {s3_reason(exc)}") from None
            return
        with self._temporary() as tmp:
            tmp.write_bytes(data)
            self._publish(tmp, name)

    def put_file(self, name: str, path: Path) -> None:
        """Publish a finished local file under `name` (rename within the folder, or one S3 upload)."""
        if self.s3:
            try:
                self.client.upload_file(str(path), self.bucket, self.prefix + name)
            except _s3_errors() as exc:
                raise InputError(f"cannot write {self.describe(name)}: {s3_reason(exc)}") from None
            return
        self._publish(path, name)

    def remove_all(self) -> int:
        """Delete the manifest, parts and markers (nothing else); returns how many."""
        names = sorted(self.names())
        if self.s3:
            for k in range(0, len(names), 1000):
                try:
                    self.client.delete_objects(Bucket=self.bucket, Delete={
                        "Objects": [{"Key": self.prefix + n} for n in names[k:k + 1000]], "Quiet": True})
                except _s3_errors() as exc:
                    raise InputError(f"cannot delete in {self.location}: {s3_reason(exc)}") from None
        else:
            for n in names:
                (self.folder / n).unlink(missing_ok=True)
        return len(names)

    def remove_scratch(self) -> int:
        """Delete scratch files that killed workers left in a local output folder (once every split is done)."""
        if self.s3 or not self.folder.is_dir():
            return 0
        stale = list(self.folder.glob(f"{SCRATCH_PREFIX}*"))
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """A temporary file to write a part into: in the output folder (so publishing it is a rename), or in
        TMPDIR for S3. Removed if it was not published."""
        with self._temporary() as tmp:
            yield tmp

    @contextlib.contextmanager
    def open_part(self, name: str) -> Iterator[BinaryIO]:
        if self.s3:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"]
            except _s3_errors() as exc:
                raise InputError(f"cannot read {self.describe(name)}: {s3_reason(exc)}") from None
            with contextlib.closing(body):
                yield body  # type: ignore[misc]
            return
        with open(self.folder / name, "rb") as f:
            yield f

    @contextlib.contextmanager
    def _temporary(self) -> Iterator[Path]:
        folder = None
        if not self.s3:
            self.folder.mkdir(parents=True, exist_ok=True)
            folder = self.folder
        fd, name = tempfile.mkstemp(prefix=SCRATCH_PREFIX, dir=folder)
        os.close(fd)
        path = Path(name)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def _publish(self, tmp: Path, name: str) -> None:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / name)


# ------------------------------------------------------------------------------------------ manifest and markers


def load_manifest(store: PartStore) -> Manifest | None:
    raw = store.read(MANIFEST)
    if raw is None:
        return None
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError:
        raise InputError(f"{store.describe(MANIFEST)} is not a manifest this version can read; use "
                         f"--overwrite or another output folder") from None
    return manifest


def done_markers(store: PartStore, manifest: Manifest) -> dict[int, PartDone]:
    """The splits that are done, by index, with their markers: a marker that cannot be read, or whose part is
    missing or not the size it recorded (two attempts of one split that finished at the same instant), does
    not count, so the split is scanned again."""
    present = store.listing()
    out: dict[int, PartDone] = {}
    for split in manifest.splits:
        marker = read_marker(store, split, present)
        if marker is not None:
            out[split.index] = marker
    return out


def read_marker(store: PartStore, split: SplitSpec, present: dict[str, int] | None = None) -> PartDone | None:
    """The split's marker when the split is done (see `done_markers`), else None."""
    present = store.listing() if present is None else present
    name = done_name(split.part)
    if name not in present or split.part not in present:
        return None
    raw = store.read(name)
    try:
        marker = PartDone.model_validate_json(raw) if raw is not None else None
    except ValidationError:
        return None
    return marker if marker is not None and marker.bytes == present[split.part] else None


def merge_parts(store: PartStore, out: BinaryIO) -> tuple[int, int]:
    """Concatenate every part in order into `out`, checking each against its marker; (parts, rows).

    Raises ScanIncompleteError when a part is missing (before writing anything) or does not match its marker
    (then `out` holds the parts before it: write to a temporary file and rename it on success)."""
    manifest = load_manifest(store)
    if manifest is None:
        raise InputError(f"{store.location} holds no distributed scan ({MANIFEST} is missing)")
    done = done_markers(store, manifest)
    missing = [s for s in manifest.splits if s.index not in done]
    if missing:
        names = ", ".join(s.part for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ScanIncompleteError(f"{len(missing)} of {len(manifest.splits)} parts are not done ({names}); rerun "
                                  f"the scan with --resume to finish them")
    rows = 0
    for split in manifest.splits:
        marker = done[split.index]
        digest, size = hashlib.sha256(), 0
        with store.open_part(split.part) as part:
            while chunk := part.read(BUFFER_SIZE):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if digest.hexdigest() != marker.sha256 or size != marker.bytes:
            raise ScanIncompleteError(f"{store.describe(split.part)} does not match its marker (changed after it "
                                      f"was written); rerun the scan with --resume")
        rows += marker.rows
    return len(manifest.splits), rows


def dump(model: BaseModel) -> bytes:
    return json.dumps(model.model_dump(mode="json"), indent=1, ensure_ascii=False).encode() + b"\n"
