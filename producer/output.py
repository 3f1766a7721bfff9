"""Ordered JSONL output that can be resumed: complete lines only count, a torn last line is cut off."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO

from pydantic_core import to_json

from llm_shield.contract import ResultFields, TextResult
from llm_shield.errors import InputError

FSYNC_EVERY_ROWS = 10_000


def completed_rows(path: Path) -> tuple[int, str | None, int]:
    """(complete rows, id of the last one, byte length of the complete part) of an existing output file."""
    count, last_id, good_bytes = 0, None, 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break  # torn by a crash mid-write
            try:
                last_id = json.loads(line)["id"]
            except (ValueError, KeyError, TypeError):
                break
            count += 1
            good_bytes += len(line)
    return count, last_id, good_bytes


class ResultWriter:
    """Writes rows as JSON lines to a file (or stdout for '-'), flushing after every batch."""

    def __init__(self, target: str, resume: bool = False, overwrite: bool = False) -> None:
        self.target = target
        self.skip = 0
        self.last_id: str | None = None
        self._since_sync = 0
        if target == "-":
            if resume:
                raise InputError("--resume needs an output file, not standard output")
            self._out: IO[str] = sys.stdout
            return
        path = Path(target)
        if path.exists() and path.stat().st_size and not (resume or overwrite):
            raise InputError(f"{path} exists: pass --resume to continue it or --overwrite to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume and path.exists():
            self.skip, self.last_id, good = completed_rows(path)
            with open(path, "r+b") as f:
                f.truncate(good)
            self._out = open(path, "a", encoding="utf-8")
        else:
            self._out = open(path, "w", encoding="utf-8")

    def write_result(self, record_id: str, source: dict, result: ResultFields | TextResult) -> None:
        """One line: `OutputRow(id, source, **result).model_dump_json()`, byte for byte, without building the
        row (which cost a cached rescan twice the time). `result` is a TextResult, whose JSON is spliced in, or
        its JSON data (`contract.ResultFields`)."""
        # NaN and Infinity become null, as in a model's JSON (a JSONL source may hold them)
        if isinstance(result, dict):
            line = to_json({"id": record_id, "source": source, **result}, inf_nan_mode="null")
        else:
            head = to_json({"id": record_id, "source": source}, inf_nan_mode="null")
            line = head[:-1] + b"," + result.__pydantic_serializer__.to_json(result)[1:]
        self._out.write(line.decode() + "\n")
        self._since_sync += 1

    def flush(self) -> None:
        self._out.flush()
        if self._out is not sys.stdout and self._since_sync >= FSYNC_EVERY_ROWS:
            os.fsync(self._out.fileno())
            self._since_sync = 0

    def close(self) -> None:
        self._out.flush()
        if self._out is not sys.stdout:
            os.fsync(self._out.fileno())
            self._out.close()
