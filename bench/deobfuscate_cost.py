"""What reading disguised texts twice costs (worker/inference.py, detection/deobfuscate.py), same model, same run.

    python bench/deobfuscate_cost.py [--home HOME] [--task prompt_injection] [--variant int8] [--rounds 5]

Scores the same texts with the engine as shipped and with `read_disguises=False`, in alternating rounds: short log
lines, a mix with long documents, and the prompt-injection ``ood_test`` split (real benign traffic of every kind
plus attacks, some obfuscated). Prints texts/s of both, their ratio (median over rounds), how many texts got a
second reading, and the time `deobfuscate()` alone takes against the tokenizer alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_models import texts as short_texts  # noqa: E402
from bench.compare_models import mixed_texts, rate  # noqa: E402
from llm_shield.detection.deobfuscate import deobfuscate  # noqa: E402
from llm_shield.settings import ShieldSettings  # noqa: E402
from llm_shield.worker.inference import InferenceEngine  # noqa: E402
from llm_shield.worker.loader import ModelLoader  # noqa: E402


def ood_texts() -> list[str]:
    with gzip.open(REPO / "data" / "prompt_injection" / "ood_test.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="SHIELD_HOME with built models (default: the setting)")
    parser.add_argument("--task", default="prompt_injection")
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--texts", type=int, default=1024)
    args = parser.parse_args()
    settings = (ShieldSettings(home=args.home, catalog=str(args.home / "catalog.json"), intra_op_threads=None)
                if args.home else ShieldSettings(intra_op_threads=None))
    model = ModelLoader(settings).get(args.task, args.variant)
    engines = {"plain": InferenceEngine(model, read_disguises=False), "shipped": InferenceEngine(model)}
    ood = ood_texts()
    words = model.tokenizer.words
    for name, batch in (("short lines", short_texts(args.texts)), ("mix", mixed_texts(args.texts // 4)),
                        ("ood_test", ood)):
        twice = sum(deobfuscate(t, words) != t for t in batch)
        for eng in engines.values():
            rate(eng, batch[:128])  # warm-up
        got: dict[str, list[float]] = {k: [] for k in engines}
        for _ in range(args.rounds if name != "ood_test" else 1):
            for key, eng in engines.items():
                got[key].append(rate(eng, batch))
        plain, shipped = statistics.median(got["plain"]), statistics.median(got["shipped"])
        print(f"{args.task}/{args.variant} {name}: {len(batch)} texts, {twice} read twice; without "
              f"{plain:.0f} texts/s, with {shipped:.0f} texts/s, ratio {shipped / plain:.2f}")
    started = time.perf_counter()
    for text in ood:
        deobfuscate(text, words)
    undisguise = time.perf_counter() - started
    started = time.perf_counter()
    model.tokenizer.encode(ood)
    tokenize = time.perf_counter() - started
    print(f"deobfuscate() on the {len(ood)} ood_test texts: {undisguise:.2f} s; the tokenizer alone {tokenize:.2f} s")


if __name__ == "__main__":
    main()
