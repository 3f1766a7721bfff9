"""Side-by-side throughput of two builds of one scanner (e.g. before and after retraining), same texts, same run.

    python bench/compare_models.py --baseline OLD_HOME --candidate NEW_HOME [--task prompt_injection]
                                   [--variant int8] [--rounds 5]

Each home is a SHIELD_HOME with a catalog (`llm-shield models build`). Both models score the same short log lines
and the same mix of short and long texts through the project's engine, in alternating rounds (so load on a shared
machine hits both alike); prints texts/s of each and the candidate/baseline ratio (median over rounds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_models import texts as short_texts  # noqa: E402
from llm_shield.settings import ShieldSettings  # noqa: E402
from llm_shield.worker.inference import InferenceEngine  # noqa: E402
from llm_shield.worker.loader import ModelLoader  # noqa: E402

PARAGRAPH = ("The service keeps a local copy of every model it serves and checks its digest before use. "
             "Operators rotate credentials monthly and review the audit log for unexpected access. ")


def mixed_texts(n: int) -> list[str]:
    short = short_texts(n)
    return [short[i] if i % 4 else PARAGRAPH * (1 + i % 12) + str(i) for i in range(n)]


def engine(home: Path, task: str, variant: str) -> InferenceEngine:
    settings = ShieldSettings(home=home, catalog=str(home / "catalog.json"), intra_op_threads=None)
    return InferenceEngine(ModelLoader(settings).get(task, variant))


def rate(eng: InferenceEngine, batch: list[str]) -> float:
    started = time.perf_counter()
    for start in range(0, len(batch), 128):
        eng.score(batch[start:start + 128])
    return len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--task", default="prompt_injection")
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--texts", type=int, default=1024)
    args = parser.parse_args()
    engines = {"baseline": engine(args.baseline, args.task, args.variant),
               "candidate": engine(args.candidate, args.task, args.variant)}
    for name, batch in (("short lines", short_texts(args.texts)), ("mix", mixed_texts(args.texts // 4))):
        for eng in engines.values():
            rate(eng, batch[:128])  # warm-up
        got: dict[str, list[float]] = {k: [] for k in engines}
        for _ in range(args.rounds):
            for key, eng in engines.items():
                got[key].append(rate(eng, batch))
        base, cand = statistics.median(got["baseline"]), statistics.median(got["candidate"])
        print(f"{args.task}/{args.variant} {name}: baseline {base:.0f} texts/s, candidate {cand:.0f} texts/s, "
              f"ratio {cand / base:.2f}")


if __name__ == "__main__":
    main()
