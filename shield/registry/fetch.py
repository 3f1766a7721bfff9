"""`ensure_available`: one verified local copy of a model per node, fetched at most once.

Files land in `<home>/models/<entry id>/`, written to a temporary name while their sha256 is computed and
renamed into place only when it matches. A file lock per entry lets one process download while the others
wait, then find the verified copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from filelock import FileLock

from llm_shield.config import Variant
from llm_shield.errors import ChecksumMismatchError, ConfigError, ModelUnavailableError
from llm_shield.registry.catalog import Catalog, CatalogEntry, ModelFile, load_catalog
from llm_shield.registry.transfer import CHUNK, file_path, open_url
from llm_shield.settings import ShieldSettings, get_settings

log = logging.getLogger("shield.registry")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def models_dir(settings: ShieldSettings) -> Path:
    return settings.home / "models"


def entry_dir(entry: CatalogEntry, settings: ShieldSettings) -> Path:
    """The entry's folder in the cache; refuses anything that would resolve outside it."""
    root = models_dir(settings).resolve()
    folder = (root / entry.id).resolve()
    if folder.parent != root:
        raise ConfigError(f"catalog entry {entry.id!r} would write outside the cache folder {root}")
    return folder


def allowed_file_roots(settings: ShieldSettings) -> list[Path]:
    roots = [settings.home, *settings.file_roots]
    catalog = settings.catalog_location
    if not catalog.startswith(("http://", "https://", "s3://")):
        roots.append(Path(catalog.removeprefix("file://")).parent)
    return [r.resolve() for r in roots]


def _check_file_source(url: str, settings: ShieldSettings) -> None:
    path = file_path(url).resolve()
    roots = allowed_file_roots(settings)
    if not any(path.is_relative_to(root) for root in roots):
        raise ConfigError(
            f"{url} is outside the folders file:// sources may read ({', '.join(map(str, roots))}); "
            "add its folder to SHIELD_FILE_ROOTS"
        )


def _is_verified(path: Path, record: ModelFile) -> bool:
    return path.is_file() and path.stat().st_size == record.size and sha256_file(path) == record.sha256


def _download(url: str, dest: Path, record: ModelFile) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    h = hashlib.sha256()
    try:
        with open_url(url) as src, open(tmp, "wb") as out:
            while chunk := src.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest, size = h.hexdigest(), tmp.stat().st_size
        if digest != record.sha256 or size != record.size:
            raise ChecksumMismatchError(
                f"{url}: sha256 {digest} ({size} bytes) does not match the catalog's {record.sha256} "
                f"({record.size} bytes); the file was discarded — fix the catalog entry or the source"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_entry(entry: CatalogEntry, settings: ShieldSettings) -> Path:
    """Make every file of `entry` present and verified in its cache folder; return the folder."""
    folder = entry_dir(entry, settings)
    folder.mkdir(parents=True, exist_ok=True)
    lock_dir = models_dir(settings) / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{entry.id}.lock"), timeout=3600):
        for record in entry.files:
            dest = folder / record.name
            if _is_verified(dest, record):
                continue
            url = entry.source + record.name
            is_file = url.startswith("file://")
            if settings.offline and not is_file:
                raise ModelUnavailableError(
                    f"offline mode (SHIELD_OFFLINE): {entry.id}/{record.name} is not verified in {folder}; "
                    "fetch it once with network access or copy the model folder there"
                )
            if is_file:
                _check_file_source(url, settings)
            dest.unlink(missing_ok=True)
            log.info("fetching %s", url)
            _download(url, dest, record)
    return folder


def ensure_available(
    task: str,
    variant: Variant | str,
    settings: ShieldSettings | None = None,
    catalog: Catalog | None = None,
) -> Path:
    """Local folder holding the verified files of the model for `task` in `variant`."""
    settings = settings or get_settings()
    catalog = catalog or load_catalog(settings.catalog_location)
    return fetch_entry(catalog.find(task, variant), settings)


def verify_local(entry: CatalogEntry, settings: ShieldSettings) -> list[str]:
    """Problems with the local copy of `entry` (empty when every file is present and matches)."""
    folder = entry_dir(entry, settings)
    problems = []
    for record in entry.files:
        path = folder / record.name
        if not path.exists():
            problems.append(f"{record.name}: not downloaded")
        elif not _is_verified(path, record):
            problems.append(f"{record.name}: sha256 or size differs from the catalog")
    return problems
