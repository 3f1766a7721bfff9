"""The GPU path, measured on a machine with CUDA: raw onnxruntime at every batch size (plain `run`, IO binding,
TensorRT when its libraries are there), the worker's own inference engine with its share of time in
`Session.run`, fp16-on-GPU agreement with fp32 scores computed on a CPU, and the real system end to end
(redis-server, `llm-shield worker --variant fp16`, `llm-shield scan --variant fp16`), with one producer and,
with `--sections distributed`, as a `--distributed` scan of one large file (no producer in the rows' path).

    python bench/bench_gpu.py --home DIR [--reference REF.jsonl] [--rows N] [--json OUT]
    python bench/bench_gpu.py --home DIR --write-reference REF.jsonl --texts TEXTS.jsonl   # on a CPU, fp32

The reference file holds {"text", "score"} lines: the fp32 model's scores of the same texts, made beforehand
on any machine (`--write-reference`), so the GPU machine needs only the fp16 model. Inputs are bench/run_all.py's
short log lines (one 256-token window each) and its realistic mix; the end-to-end scans start from a cold cache.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from raw_onnx import make_session  # noqa: E402

from run_all import (TASK, Workers, child_env, clear_cache, log_lines, mixed_rows, pad,  # noqa: E402
                     run_scan, write_jsonl, write_many_log_lines, write_text_lines)

RAW_BATCHES = (32, 64, 128, 256, 512, 1024, 2048)
CUDA = ("CUDAExecutionProvider", "CPUExecutionProvider")
DEVICE = "cuda"  # "cpu" with --cpu: a smoke test of this script on a machine without a GPU


def say(text: str) -> None:
    print(text, flush=True)


def gpu_info() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        out = f"nvidia-smi failed: {exc}"
    return out or "no GPU reported by nvidia-smi"


def best_seconds(fn: Callable[[], None], repeats: int = 3) -> float:
    fn()  # warm-up: allocations, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def raw_sweep(model_path: Path, tokenizer, texts: list[str], results: dict) -> None:  # noqa: ANN001
    """texts/s of session.run at each batch size: numpy in and out; IO binding with host inputs; IO binding
    with inputs already on the GPU (the device's own ceiling); the TensorRT provider if it loads."""
    import onnxruntime as ort

    windows = [w.ids for w in tokenizer.encode(texts).windows]
    providers = CUDA if DEVICE == "cuda" else CUDA[1:]
    sess = make_session(model_path, os.cpu_count() or 1, providers)
    names = {i.name for i in sess.get_inputs()}
    results["raw_providers"] = sess.get_providers()
    plain, bound, resident = {}, {}, {}
    for b in [b for b in RAW_BATCHES if b <= len(texts)]:
        feeds = [pad(windows[i:i + b], names) for i in range(0, len(windows), b)]

        def run_plain() -> None:
            for f in feeds:
                sess.run(["logits"], f)

        def bound_runs(batches: list[dict], resident_inputs: bool) -> Callable[[], None]:
            """IO binding, the output kept on the device: inputs from host memory (copied back out, as the
            worker needs the scores) or already resident on the device (its own ceiling)."""
            def run() -> None:
                for f in batches:
                    io = sess.io_binding()
                    for k, v in f.items():
                        (io.bind_ortvalue_input if resident_inputs else io.bind_cpu_input)(k, v)
                    io.bind_output("logits", DEVICE)
                    sess.run_with_iobinding(io)
                    if not resident_inputs:
                        io.copy_outputs_to_cpu()
                io.synchronize_outputs()
            return run

        on_gpu = [{k: ort.OrtValue.ortvalue_from_numpy(v, DEVICE, 0) for k, v in f.items()} for f in feeds]
        plain[b] = len(texts) / best_seconds(run_plain)
        bound[b] = len(texts) / best_seconds(bound_runs(feeds, resident_inputs=False))
        resident[b] = len(texts) / best_seconds(bound_runs(on_gpu, resident_inputs=True))
        say(f"  batch {b:5d}: run {plain[b]:9,.0f}  io-binding {bound[b]:9,.0f}  inputs on GPU {resident[b]:9,.0f} texts/s")
    results["raw_run"] = plain
    results["raw_io_binding"] = bound
    results["raw_inputs_on_gpu"] = resident
    try:
        trt = make_session(model_path, os.cpu_count() or 1, ["TensorrtExecutionProvider", *providers])
        used = trt.get_providers()
        if "TensorrtExecutionProvider" not in used:
            results["tensorrt"] = f"not used: the session fell back to {used}"
        else:
            b = max(plain, key=plain.get)
            feeds = [pad(windows[i:i + b], names) for i in range(0, len(windows), b)]
            rate = len(texts) / best_seconds(lambda: [trt.run(["logits"], f) for f in feeds])
            results["tensorrt"] = {"batch": b, "texts_per_s": rate}
    except Exception as exc:  # noqa: BLE001 - any failure to load TensorRT is a finding, not a crash
        results["tensorrt"] = f"not available: {str(exc).splitlines()[0][:300]}"
    say(f"  TensorRT: {results['tensorrt']}")


def engine_share(engine, rows: list[str], chunk: int) -> dict:  # noqa: ANN001
    """The worker's InferenceEngine.score over `rows` in chunks of `chunk` rows (one task's rows): rows/s and
    the share of its time spent inside Session.run."""
    engine.score(rows[:chunk])
    engine.metrics.total_inference_ms = 0.0
    start = time.perf_counter()
    for i in range(0, len(rows), chunk):
        engine.score(rows[i:i + chunk])
    wall = time.perf_counter() - start
    return {"rows_per_s": len(rows) / wall, "session_run_share": engine.metrics.total_inference_ms / 1000 / wall}


def agreement(engine, reference: Path, threshold: float) -> dict:  # noqa: ANN001
    refs = [json.loads(line) for line in reference.read_text(encoding="utf-8").splitlines() if line.strip()]
    got = engine.score([r["text"] for r in refs])
    diffs = [abs(g.score - r["score"]) for g, r in zip(got, refs)]
    flips = sum((g.score >= threshold) != (r["score"] >= threshold) for g, r in zip(got, refs))
    return {"texts": len(refs), "mean_abs_diff": sum(diffs) / len(diffs), "max_abs_diff": max(diffs),
            "decision_flips": flips, "threshold": threshold}


def write_reference(home: Path, texts_file: Path, out: Path, limit: int) -> None:
    """fp32 scores (CPU) of the texts of a JSONL file (a "text" field; .gz allowed), for --reference."""
    from llm_shield.settings import ShieldSettings
    from llm_shield.worker.inference import InferenceEngine
    from llm_shield.worker.loader import ModelLoader

    opener = gzip.open if texts_file.suffix == ".gz" else open
    with opener(texts_file, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(limit), f)]
    engine = InferenceEngine(ModelLoader(ShieldSettings()).get(TASK, "fp32"))
    with open(out, "w", encoding="utf-8") as f:
        for text, s in zip(texts, engine.score(texts)):
            f.write(json.dumps({"text": text, "score": s.score}) + "\n")
    say(f"wrote {len(texts)} fp32 reference scores to {out}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="SHIELD_HOME whose catalog holds the models")
    parser.add_argument("--reference", type=Path, help="fp32 reference scores (--write-reference makes them)")
    parser.add_argument("--write-reference", type=Path, help="write fp32 CPU scores of --texts here and stop")
    parser.add_argument("--texts", type=Path, help="JSONL with a text field, for --write-reference")
    parser.add_argument("--limit", type=int, default=600, help="texts for --write-reference")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the end-to-end scans")
    parser.add_argument("--pools", default="1,4", help="pool processes of the end-to-end runs, comma-separated")
    parser.add_argument("--sections", default="raw,engine,agreement,e2e",
                        help="comma-separated: raw, engine, agreement, e2e, distributed")
    parser.add_argument("--distributed-rows", type=int, default=1_000_000, help="rows of the distributed scan")
    parser.add_argument("--split-size", default="4MB", help="--split-size of the distributed scan")
    parser.add_argument("--json", dest="json_out", type=Path, help="write the figures here as JSON")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU: a smoke test of this script only")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = "cpu" if args.cpu else "cuda"

    home = args.home.resolve()
    os.environ["SHIELD_HOME"] = str(home)
    os.environ["SHIELD_CATALOG"] = str(home / "catalog.json")
    os.environ["SHIELD_METRICS_PORT"] = "0"
    if args.write_reference:
        write_reference(home, args.texts, args.write_reference, args.limit)
        return 0

    import onnxruntime as ort

    from llm_shield.local_redis import LocalRedis
    from llm_shield.settings import ShieldSettings
    from llm_shield.worker.inference import InferenceEngine
    from llm_shield.worker.loader import ModelLoader

    results: dict = {"gpu": gpu_info(), "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
                     "cpus": os.cpu_count()}
    say(f"GPU: {results['gpu']}; onnxruntime {results['onnxruntime']}; providers {results['providers']}")
    if DEVICE == "cuda" and "CUDAExecutionProvider" not in results["providers"]:
        say("CUDAExecutionProvider is not available: install the gpu extra (onnxruntime-gpu) on a CUDA machine")
        return 2
    started = time.perf_counter()
    model = ModelLoader(ShieldSettings()).get(TASK, "fp16")
    results["load_seconds"] = round(time.perf_counter() - started, 2)
    results["worker_providers"] = model.providers
    say(f"worker session providers: {model.providers} (loaded in {results['load_seconds']} s)")
    if DEVICE == "cuda" and model.providers[0] != "CUDAExecutionProvider":
        say("the worker's fp16 session did not start on CUDA")
        return 2

    sections = set(args.sections.split(","))
    n = 8192 if DEVICE == "cuda" else 64
    if "raw" in sections:
        say(f"1. raw onnxruntime, short log lines ({n:,} texts, pre-tokenized, pre-padded)")
        raw_sweep(model.folder / "model.onnx", model.tokenizer, log_lines(n), results)

    engine = InferenceEngine(model)
    if "engine" in sections:
        say(f"2. the worker's engine (token budget {engine.max_batch_tokens}), share of its time in Session.run")
    short, mix = (log_lines(16_384), mixed_rows(4096)) if DEVICE == "cuda" else (log_lines(256), mixed_rows(128))
    for label, rows in (("short", short), ("mix", mix)) if "engine" in sections else ():
        for chunk in (128, 1024):
            r = results[f"engine_{label}_{chunk}"] = engine_share(engine, rows, chunk)
            say(f"  {label} rows, {chunk} rows per call: {r['rows_per_s']:,.0f} rows/s, "
                f"{r['session_run_share']:.0%} of the time in Session.run")

    if args.reference and "agreement" in sections:
        r = results["agreement_fp16_gpu_vs_fp32_cpu"] = agreement(engine, args.reference, model.entry.threshold)
        say(f"3. fp16 on GPU vs fp32 on CPU, {r['texts']} texts: mean |diff| {r['mean_abs_diff']:.4f}, max "
            f"{r['max_abs_diff']:.4f}, decision flips at {r['threshold']}: {r['decision_flips']}")

    work = Path(tempfile.mkdtemp(prefix="shield-gpu-bench-"))
    short_file = write_text_lines(work / "short.log", log_lines(args.rows))
    mix_file = write_jsonl(work / "mix.jsonl", mixed_rows(args.rows // 4))
    warm = write_text_lines(work / "warm.log", [f"warm-up line {i}" for i in range(64)])
    server = LocalRedis.start(work / "redis")
    pools = [int(p) for p in args.pools.split(",")]
    try:
        if "e2e" in sections:
            say(f"4. the system end to end: redis-server, `llm-shield worker --variant fp16`, `llm-shield scan`, "
                f"{args.rows:,} short log lines, cold cache")
        for processes in pools if "e2e" in sections else ():
            env = child_env(home)
            with Workers(server.url, ["fp16"], processes, env, work):
                run_scan(warm, work / "warm.out", server.url, env, "fp16")
                for batch in (128, 1024):
                    for label, path in (("short", short_file), ("mix", mix_file)):
                        clear_cache(server.url)
                        run = run_scan(path, work / "out.jsonl", server.url,
                                       child_env(home, {"SHIELD_BATCH_SIZE": str(batch)}), "fp16", check_ml=True)
                        key = f"e2e_{label}_{processes}p_batch{batch}"
                        results[key] = {"rows": run.rows, "rows_per_s": run.rate, "producer_rows_per_s":
                                        run.producer_rate, "ml_rows": run.ml_rows}
                        say(f"  {processes} pool process(es), {batch} rows per task, {label}: {run.rows:,} rows, "
                            f"{run.rate:,.0f} rows/s (wall, process start included)")
        if "distributed" in sections:
            big = write_many_log_lines(work / "big.log", args.distributed_rows)
            say(f"5. `llm-shield scan --distributed --split-size {args.split_size}` of one file of "
                f"{args.distributed_rows:,} short log lines, 1,024 rows per batch, cold cache")
        for processes in pools if "distributed" in sections else ():
            env = child_env(home, {"SHIELD_BATCH_SIZE": "1024"})
            with Workers(server.url, ["fp16"], processes, env, work):
                run_scan(warm, work / "warm.out", server.url, env, "fp16")
                clear_cache(server.url)
                run = run_scan(big, work / f"dist-{processes}", server.url, env, "fp16",
                               extra=["--distributed", "--split-size", args.split_size])
                results[f"distributed_{processes}p"] = {"rows": run.rows, "rows_per_s": run.rate}
                say(f"  {processes} pool process(es): {run.rows:,} rows, {run.rate:,.0f} rows/s (wall, planning and "
                    "process start included)")
    finally:
        server.stop()
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
