"""`llm-shield models train TASK`: fine-tune, calibrate on the validation split, write the trained artifact.

Reads ``data/<task>/train.jsonl.gz`` (examples) and ``data/<task>/val.jsonl.gz`` (held-out rows used only to choose
the operating point), fine-tunes the top encoder layers with ``finetune``, then on the validation split: fits the
window penalty (long benign texts must not be flagged more often than short ones) and the threshold that flags
``target_fpr`` of the benign texts. Everything lands in ``worker/modelbuild/trained/<task>.safetensors``.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from pathlib import Path

import numpy as np

from llm_shield import calibration
from llm_shield.errors import ConfigError
from llm_shield.worker.modelbuild import finetune

log = logging.getLogger("shield.modelbuild.train")

TRAINED_DIR = Path(__file__).resolve().parent / "trained"
#: Windows of one training text kept at most (a long benign document adds a few windows, not dozens).
TRAIN_MAX_WINDOWS = 3
#: Window settings of the validation scoring: the workers' defaults (SHIELD_WINDOW_STRIDE, SHIELD_MAX_WINDOWS).
VAL_STRIDE = 32
VAL_MAX_WINDOWS = 32


def artifact_path(task: str) -> Path:
    return TRAINED_DIR / f"{task}.safetensors"


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        raise ConfigError(f"no data at {path}: run `python data/realistic/assemble.py` first")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def labelled(rows: list[dict], labels: tuple[str, str], risk_label: str) -> tuple[list[str], list[int]]:
    texts, y = [], []
    for n, row in enumerate(rows, 1):
        if row["label"] not in labels:
            raise ConfigError(f"row {n}: label {row['label']!r} is not one of {labels}")
        texts.append(row["text"])
        y.append(1 if row["label"] == risk_label else 0)
    return texts, y


def train_task(task: str, data_dir: Path, out: Path | None = None, weights_source: str | None = None,
               settings: finetune.TrainSettings | None = None,
               target_fpr: float = calibration.DEFAULT_TARGET_FPR) -> dict:
    """Train `task`, write its artifact; returns the artifact's metadata."""
    from llm_shield.worker.modelbuild.build import MAX_LENGTH, TASKS
    from llm_shield.worker.modelbuild.weights import load_bert_weights, locate_weights

    torch = finetune._torch()
    settings = settings or finetune.TrainSettings()
    spec = TASKS[task]
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    train_file, val_file = data_dir / task / "train.jsonl.gz", data_dir / task / "val.jsonl.gz"
    train_rows, val_rows = read_rows(train_file), read_rows(val_file)
    texts, y = labelled(train_rows, spec.labels, spec.risk_label)
    weights_dir = locate_weights(weights_source)
    weights, config = load_bert_weights(weights_dir)
    tokenizer = weights_dir / "tokenizer.json"
    started = time.monotonic()
    spans = [tuple(r["span"]) if r.get("span") else None for r in train_rows]
    data = finetune.windows_for(tokenizer, texts, y, [float(r.get("weight", 1.0)) for r in train_rows],
                                MAX_LENGTH, VAL_STRIDE, TRAIN_MAX_WINDOWS, spans=spans)
    log.info("%s: %d training texts -> %d windows, %d tokens", task, len(texts), len(data.ids),
             sum(len(i) for i in data.ids))
    frozen, top, bias = finetune.build_modules(weights, config, settings.train_layers)
    states = finetune.frozen_states(frozen, bias, data)
    log.info("%s: frozen layers done in %.0f s", task, time.monotonic() - started)
    finetune.train_top(top, states, data, settings)
    del states
    log.info("%s: trained in %.0f s", task, time.monotonic() - started)
    # the artifact keeps float16: choose the operating point with exactly the weights the build will use
    top.load({k: v.astype(np.float16).astype(np.float32) for k, v in top.exported().items()})

    meta = {
        "format": finetune.ARTIFACT_FORMAT, "task": task, "labels": list(spec.labels),
        "risk_label": spec.risk_label, "pooling": "mean", "normalize": False,
        "train_layers": settings.train_layers, "head_hidden": finetune.HEAD_HIDDEN,
        "base_sha256": finetune.file_sha256(weights_dir / "model.safetensors"),
        "train_sha256": finetune.file_sha256(train_file),
        "settings": finetune.settings_dict(settings), "train_texts": len(texts), "train_windows": len(data.ids),
    }
    meta.update(_operating_point(top, frozen, bias, tokenizer, val_rows, spec, target_fpr))
    meta["val_sha256"] = finetune.file_sha256(val_file)
    out = out or artifact_path(task)
    finetune.save_artifact(out, top.exported(), meta)
    log.info("%s: wrote %s (%s)", task, out, {k: meta[k] for k in ("window_penalty", "threshold", "val_fpr",
                                                                     "val_recall")})
    return meta


def calibrate_task(task: str, data_dir: Path, artifact: Path | None = None, weights_source: str | None = None,
                   target_fpr: float = calibration.DEFAULT_TARGET_FPR) -> dict:
    """Choose a trained artifact's operating point again on the validation split (no training); rewrites it."""
    from llm_shield.worker.modelbuild.build import TASKS
    from llm_shield.worker.modelbuild.weights import load_bert_weights, locate_weights

    torch = finetune._torch()
    torch.set_num_threads(finetune.TrainSettings().threads)
    spec = TASKS[task]
    artifact = artifact or artifact_path(task)
    tensors, meta = finetune.load_artifact(artifact)
    val_file = data_dir / task / "val.jsonl.gz"
    weights_dir = locate_weights(weights_source)
    weights, config = load_bert_weights(weights_dir)
    frozen, top, bias = finetune.build_modules(weights, config, meta["train_layers"])
    top.load(tensors)
    top.eval()
    meta.update(_operating_point(top, frozen, bias, weights_dir / "tokenizer.json", read_rows(val_file), spec,
                                 target_fpr))
    meta["val_sha256"] = finetune.file_sha256(val_file)
    finetune.save_artifact(artifact, tensors, meta)
    log.info("%s: recalibrated %s (%s)", task, artifact, {k: meta[k] for k in ("window_penalty", "threshold",
                                                                                "val_fpr", "val_recall")})
    return meta


def _operating_point(top, frozen, bias, tokenizer: Path, val_rows: list[dict], spec, target_fpr: float) -> dict:
    """Window penalty and threshold for `target_fpr` on the validation rows, with what they give there."""
    from llm_shield.worker.modelbuild.build import MAX_LENGTH

    val_texts, val_y = labelled(val_rows, spec.labels, spec.risk_label)
    vdata = finetune.windows_for(tokenizer, val_texts, val_y, [1.0] * len(val_texts), MAX_LENGTH, VAL_STRIDE,
                                 VAL_MAX_WINDOWS)
    window_logits = finetune.score_windows(top, finetune.frozen_states(frozen, bias, vdata))
    best, counts = _best_per_text(window_logits, vdata, len(val_texts))
    benign = np.asarray(val_y) == 0
    buckets = np.array([calibration.bucket_of(int(c)) for c in counts])
    penalty = calibration.fit_window_penalty(best[benign], counts[benign], target_fpr)
    scores = calibration.sigmoid(calibration.adjusted_logits(best, counts, penalty))
    threshold = calibration.threshold_for_fpr(scores[benign], target_fpr)
    flags = scores >= threshold
    return {
        "window_penalty": penalty, "threshold": round(threshold, 6), "target_fpr": target_fpr,
        "val_fpr": round(float(flags[benign].mean()), 4),
        "val_recall": round(float(flags[~benign].mean()), 4) if (~benign).any() else None,
        "val_texts": len(val_texts),
        "val_fpr_by_windows": {str(b): round(float(flags[benign & (buckets == b)].mean()), 4)
                               for b in calibration.WINDOW_BUCKETS if (benign & (buckets == b)).any()},
    }


def _best_per_text(window_logits: np.ndarray, data: finetune.WindowSet, n_texts: int) -> tuple[np.ndarray, np.ndarray]:
    """(riskiest window's logit, window count) per text; windows are listed text by text."""
    counts = np.zeros(n_texts, dtype=np.int64)
    best = np.full(n_texts, -np.inf)
    owner = data.owner
    np.add.at(counts, owner, 1)
    np.maximum.at(best, owner, window_logits)
    return best, counts
