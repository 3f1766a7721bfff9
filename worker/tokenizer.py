"""Tokenizer wrapper on HF `tokenizers`: overlapping token windows, padding to the longest, int64 numpy."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import Tokenizer

from llm_shield.detection.confusables import fold_look_alikes
from llm_shield.errors import ModelUnavailableError


@dataclass(frozen=True)
class Window:
    """One token window of one text, special tokens included."""

    text_index: int
    ids: list[int]
    type_ids: list[int]
    #: (first char, end char) of the text the window covers; only from ``encode(..., spans=True)`` (training)
    span: tuple[int, int] | None = None


@dataclass(frozen=True)
class Encoded:
    """All windows of a batch of texts, plus per text how many windows it got and whether any were dropped."""

    windows: list[Window]
    window_counts: list[int]
    truncated: list[bool]


class TextTokenizer:
    """Splits texts into windows of at most `max_length` tokens that overlap by `stride` tokens."""

    def __init__(self, path: Path, max_length: int, stride: int, max_windows: int) -> None:
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception for unreadable or unknown formats
            raise ModelUnavailableError(f"cannot read the tokenizer {path}: {exc} (tokenizers "
                                        f"{tokenizers.__version__})") from None
        self._tok.no_padding()  # padding happens per batch, to the longest window
        specials = self._tok.num_special_tokens_to_add(False)
        # a stride must leave room for new tokens in each window
        self.stride = max(0, min(stride, (max_length - specials) // 2))
        self.max_length = max_length
        self.max_windows = max_windows
        self._tok.enable_truncation(max_length, stride=self.stride)
        self.pad_id = self._tok.token_to_id("[PAD]") or 0
        self._check_windows(specials)

    def _check_windows(self, specials: int) -> None:
        """Refuse a `tokenizers` release whose truncation loses overflow windows: with tokenizers 0.23.1 and
        0.23.2 a long text yields its first window or two only (huggingface/tokenizers#2091), so everything
        after them would go unscanned, silently."""
        probe = " ".join(["word"] * (4 * self.max_length))
        self._tok.no_truncation()
        try:
            tokens = len(self._tok.encode(probe, add_special_tokens=False).ids)
        finally:
            self._tok.enable_truncation(self.max_length, stride=self.stride)
        enc = self._tok.encode(probe)
        parts = [enc, *enc.overflowing]
        covered = sum(len(p.ids) - specials for p in parts) - self.stride * (len(parts) - 1)
        if covered < tokens:
            raise ModelUnavailableError(
                f"tokenizers {tokenizers.__version__} drops the overflow windows of long texts ({covered} of "
                f"{tokens} tokens of a test text reach a window; huggingface/tokenizers#2091): install another "
                "release, e.g. pip install 'tokenizers>=0.19,!=0.23.1,!=0.23.2'"
            )

    @functools.cached_property
    def words(self) -> frozenset[str]:
        """The vocabulary's whole words (no "##" pieces) of Latin letters, lower-case: what leetspeak is read
        against (`detection.deobfuscate.fold_leet`)."""
        return frozenset(w.lower() for w in self._tok.get_vocab() if w.isascii() and w.isalpha() and len(w) >= 2)

    def encode(self, texts: list[str], spans: bool = False) -> Encoded:
        """Windows of `texts`, with look-alike letters in mixed-script words folded to Latin first (the same
        length, so spans hold): the models see "ignore" where an attacker wrote "іgnоrе"."""
        texts = [fold_look_alikes(t) for t in texts]
        windows: list[Window] = []
        counts: list[int] = []
        truncated: list[bool] = []
        # encode_batch_fast skips the character offsets, which only spans need: 1.2-1.3x the texts/s (measured on
        # short log lines), the ids and windows the same
        fast = None if spans else getattr(self._tok, "encode_batch_fast", None)
        for i, enc in enumerate((fast or self._tok.encode_batch)(texts)):
            parts = [enc, *enc.overflowing]
            truncated.append(len(parts) > self.max_windows)
            parts = parts[: self.max_windows]
            counts.append(len(parts))
            windows.extend(Window(i, p.ids, p.type_ids, _char_span(p.offsets) if spans else None) for p in parts)
        return Encoded(windows, counts, truncated)

    def pad(self, windows: list[Window]) -> dict[str, np.ndarray]:
        """input_ids, attention_mask and token_type_ids, padded to the longest window of the batch."""
        n, width = len(windows), max(len(w.ids) for w in windows)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for row, w in enumerate(windows):
            k = len(w.ids)
            ids[row, :k] = w.ids
            mask[row, :k] = 1
            types[row, :k] = w.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _char_span(offsets: list[tuple[int, int]]) -> tuple[int, int]:
    """Characters covered by a window's tokens (special tokens have the offset (0, 0) and are skipped)."""
    real = [o for o in offsets if o != (0, 0)]
    return (real[0][0], real[-1][1]) if real else (0, 0)
