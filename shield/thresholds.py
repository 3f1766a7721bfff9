"""Per-scanner thresholds calibrated on a user's own traffic (`llm-shield models calibrate`), used by later scans.

The file (``SHIELD_THRESHOLDS_FILE``, default ``<home>/thresholds.json``) holds, per variant and scanner, the
threshold and the sha256 of the model it was measured on: a threshold is only applied to that same model (after
a model update it is ignored with a warning, since scores of another model mean something else). An explicit
``--threshold`` always wins.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from llm_shield.config import Variant
from llm_shield.errors import ConfigError
from llm_shield.settings import ShieldSettings

log = logging.getLogger("shield.thresholds")
THRESHOLDS_VERSION = 1


class CalibratedThreshold(BaseModel):
    """One scanner's operating point on one model, and how it was measured."""

    threshold: float = Field(ge=0.0, le=1.0)
    model_id: str
    model_sha256: str
    target_fpr: float = Field(ge=0.0, le=1.0)
    fpr: float = Field(ge=0.0, le=1.0, description="False-positive rate on the benign sample at the threshold")
    recall: float | None = Field(default=None, description="Share of the attack sample flagged, if one was given")
    benign_texts: int = Field(ge=0)
    attack_texts: int = Field(default=0, ge=0)
    calibrated_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class ThresholdsFile(BaseModel):
    """Calibrated thresholds: variant -> scanner -> operating point."""

    version: int = THRESHOLDS_VERSION
    variants: dict[Variant, dict[str, CalibratedThreshold]] = Field(default_factory=dict)


def load_thresholds(path: Path) -> ThresholdsFile:
    """The thresholds file at `path`; an empty one when it does not exist."""
    if not path.exists():
        return ThresholdsFile()
    try:
        data = ThresholdsFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as exc:
        reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"thresholds file {path} is not valid ({reason}); fix it, delete it, or run "
                          "`llm-shield models calibrate` again") from None
    if data.version != THRESHOLDS_VERSION:
        raise ConfigError(f"thresholds file {path} has version {data.version}; this build reads {THRESHOLDS_VERSION}")
    return data


def save_thresholds(data: ThresholdsFile, path: Path) -> None:
    """Write atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".thresholds-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)


def calibrated_thresholds(settings: ShieldSettings, variant: Variant, scanners: tuple[str, ...]) -> dict[str, float]:
    """Thresholds from the calibration file for `scanners` on `variant`, for the models the catalog serves now."""
    data = load_thresholds(settings.thresholds_location)
    chosen = data.variants.get(Variant(variant), {})
    if not chosen:
        return {}
    try:
        from llm_shield.registry import load_catalog

        catalog = load_catalog(settings.catalog_location)
    except Exception:  # a remote or missing catalog: the file's own record is all we have
        catalog = None
    out: dict[str, float] = {}
    for name in scanners:
        point = chosen.get(name)
        if point is None:
            continue
        if catalog is not None:
            try:
                current = catalog.find(name, variant).sha256
            except Exception:
                current = None
            if current is not None and current != point.model_sha256:
                log.warning("ignoring the calibrated %s threshold in %s: it was measured on model %s, the catalog "
                            "now serves %s; run `llm-shield models calibrate` again", name,
                            settings.thresholds_location, point.model_sha256[:12], current[:12])
                continue
        out[name] = point.threshold
    return out
