"""Validation at the door: the checks `llm-shield` and the Python API run before any work starts.

Each raises `ConfigError` with one line the user can act on (the CLI exits 2 with it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from llm_shield.contract import HEURISTIC_SCANNERS, ML_SCANNERS, ScanOptions
from llm_shield.errors import ConfigError
from llm_shield.settings import redact_url

ALL_SCANNERS = ML_SCANNERS + HEURISTIC_SCANNERS
BROKER_SCHEMES = ("redis", "rediss", "unix")
#: A cache may also live on Redis Cluster (Celery's broker may not).
CACHE_SCHEMES = BROKER_SCHEMES + ("redis+cluster", "rediss+cluster")


def check_scanners(names: Iterable[str]) -> tuple[str, ...]:
    """The scanner names, or ConfigError naming the unknown ones."""
    chosen = tuple(names)
    if not chosen:
        raise ConfigError(f"no scanner chosen; choose from {', '.join(ALL_SCANNERS)}")
    unknown = [n for n in chosen if n not in ALL_SCANNERS]
    if unknown:
        raise ConfigError(f"unknown scanner(s) {', '.join(map(repr, unknown))}; choose from {', '.join(ALL_SCANNERS)}")
    return chosen


def check_thresholds(thresholds: Mapping[str, Any], flag: str = "--threshold") -> dict[str, float]:
    """Thresholds by scanner name, each a number in [0, 1]."""
    out: dict[str, float] = {}
    for name, value in thresholds.items():
        if name not in ALL_SCANNERS:
            raise ConfigError(f"{flag} {name}=...: unknown scanner {name!r}; choose from {', '.join(ALL_SCANNERS)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{flag} {name}={value!r}: not a number") from None
        if not 0.0 <= number <= 1.0:  # NaN fails this too
            raise ConfigError(f"{flag} {name}={value}: a threshold is a probability between 0 and 1")
        out[name] = number
    return out


def parse_threshold_args(values: Iterable[str]) -> dict[str, float]:
    """`SCANNER=VALUE` strings (the CLI's repeatable --threshold) as checked thresholds."""
    raw: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"--threshold {item!r}: use SCANNER=VALUE, e.g. prompt_injection=0.8")
        raw[name.strip()] = value.strip()
    return check_thresholds(raw)


def check_broker_url(url: str | None, flag: str = "--broker", schemes: tuple[str, ...] = BROKER_SCHEMES) -> str | None:
    """A Redis URL redis-py and kombu both accept (redis://, rediss://, unix://), or ConfigError. With
    ``schemes=CACHE_SCHEMES``: a cache URL, which may also name Redis Cluster (redis+cluster://HOST:PORT)."""
    if url is None:
        return None
    shown = redact_url(url) if "://" in url else "<not a URL>"
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for a port that is not a number or out of range
    except ValueError as exc:
        raise ConfigError(f"{flag} {shown}: malformed URL ({exc}); use redis://[:PASSWORD@]HOST:PORT/DB") from None
    if parts.scheme not in schemes:
        raise ConfigError(f"{flag} {shown}: the scheme must be one of {', '.join(s + '://' for s in schemes)}")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{flag} {shown}: a unix:// URL needs the socket's path, e.g. unix:///run/redis.sock")
        db = parse_qs(parts.query).get("db", ["0"])[0]
    else:
        if not parts.hostname:
            raise ConfigError(f"{flag} {shown}: no host; use redis://[:PASSWORD@]HOST:PORT/DB")
        if port == 0:
            raise ConfigError(f"{flag} {shown}: port 0 is not a port")
        db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ConfigError(f"{flag} {shown}: the database must be a number, not {db!r}")
    return url


_SIZE_UNITS = {"": 1, "B": 1, "KB": 1 << 10, "K": 1 << 10, "MB": 1 << 20, "M": 1 << 20, "GB": 1 << 30, "G": 1 << 30}


def parse_size(value: str, flag: str) -> int:
    """Bytes of a size such as 8MB, 512KB, 1G or 4096 (binary units), or ConfigError."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B?)\s*", value.upper())
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"{flag} {value!r}: use a size such as 8MB, 512KB or 1GB")
    size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    if size < 4096:
        raise ConfigError(f"{flag} {value!r}: at least 4KB")
    return size


def check_positive(value: int | None, flag: str) -> int | None:
    if value is not None and value < 1:
        raise ConfigError(f"{flag} {value}: must be at least 1")
    return value


def scan_options(**fields: Any) -> ScanOptions:
    """ScanOptions from user values, with the project's one-line errors instead of pydantic's."""
    if "scanners" in fields:
        fields["scanners"] = check_scanners(fields["scanners"])
    if "thresholds" in fields:
        fields["thresholds"] = check_thresholds(fields["thresholds"] or {}, flag="threshold")
    try:
        return ScanOptions(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}={e.get('input')!r}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"invalid scan options: {problems}") from None


def _same_file(a: Path, b: Path) -> bool:
    """Same file (hard links and symlinks too); paths that do not exist yet compare resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output(output: str, inputs: Iterable[str]) -> None:
    """The output must be a file we may write, and never one of the inputs."""
    if output == "-":
        return
    path = Path(output)
    if path.is_dir():
        raise ConfigError(f"-o {output}: is a directory; name a file, e.g. {path / 'results.jsonl'}")
    for item in inputs:
        if item == "-" or "://" in item:
            continue
        source = Path(item)
        if source.is_dir():
            if path.resolve().is_relative_to(source.resolve()):
                raise ConfigError(f"-o {output}: is inside the input folder {item}; write the results elsewhere")
        elif _same_file(source, path):
            raise ConfigError(f"-o {output}: is also an input; writing it would destroy the input")
