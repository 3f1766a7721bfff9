"""Texts per second of each model variant at batch sizes 1 and 32, through the project's engine.

    python bench/bench_models.py [--task prompt_injection] [--texts 256] [--quick]

Uses the catalog of SHIELD_HOME (run `llm-shield models build` first). Short log-like texts (~30 tokens).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import onnxruntime as ort  # noqa: E402

from llm_shield.config import Variant  # noqa: E402
from llm_shield.node import available_cpus, intra_op_threads  # noqa: E402
from llm_shield.settings import get_settings  # noqa: E402
from llm_shield.worker.inference import InferenceEngine  # noqa: E402
from llm_shield.worker.loader import ModelLoader  # noqa: E402


def texts(n: int) -> list[str]:
    base = [
        "2026-11-02T10:{:02d}:11Z INFO api request GET /v1/orders/{} completed in {} ms for user {}",
        "User {} asked: can you summarise ticket #{} and list the next steps for the {} team?",
        "Assistant reply {}: the deployment finished, {} pods are healthy, rollout took {} seconds.",
    ]
    return [base[i % 3].format(i % 60, i, i * 7 % 500, i % 97) for i in range(n)]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(engine: InferenceEngine, data: list[str], batch: int, repeats: int) -> float:
    engine.score(data[:batch])  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(data), batch):
            engine.score(data[i:i + batch])
        best = max(best, len(data) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="prompt_injection")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
    args = parser.parse_args()
    n, repeats = (32, 1) if args.quick else (args.texts, args.repeats)
    settings = get_settings()
    loader = ModelLoader(settings)
    data = texts(n)
    print(f"machine: {available_cpus()} cpus ({cpu_name()}), onnxruntime {ort.__version__}, "
          f"intra-op threads {intra_op_threads(settings)}, python {platform.python_version()}")
    print(f"{'variant':<8}{'batch':>6}{'texts/s':>10}")
    for variant in Variant:
        engine = InferenceEngine(loader.get(args.task, variant), settings.max_batch_tokens)
        for batch in (1, 32):
            print(f"{variant.value:<8}{batch:>6}{measure(engine, data, batch, repeats):>10.1f}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("SHIELD_METRICS_PORT", "0")
    os.environ.setdefault("SHIELD_WORKER_CONCURRENCY", "1")  # one process: its threads use every core
    main()
