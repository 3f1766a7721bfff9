"""The producer's cost per row, per core, beside the floor of a plain Python loop over the same file.

    python bench/bench_producer.py [--rows 10000] [--baseline REV] [--home DIR] [--json OUT]

Measures CPU seconds (user + system, `getrusage` of the finished child), not wall time: the producer's cost
per row is what limits how many rows one core can push, whatever the workers do meanwhile; CPU time also
moves little on a shared, noisy machine. Process start (imports, connecting) is measured on a one-row file
and taken off, so the figures are rows per CPU-second of the steady state. It is measured per path: a run that
sends work also imports Celery and builds its app on its first batch, which a cached run never does, so the
sent path's start is a one-row run whose row goes to the worker. Starts and the cached run are the median of
three runs (a single one-row run can be off by half a CPU-second on a busy machine, which skews every figure).

Paths, each on the same JSONL file of short log-like rows (distinct texts):
- **floor**: a plain loop that reads the file, `json.loads` each line and writes one `json.dumps` line per row;
- **sent to workers**: `llm-shield scan` on an empty cache (every row goes to the workers; one int8 worker
  process serves them);
- **cached**: the same scan again (every row answered from the shared cache by the producer itself).

`--baseline REV` runs the producer (and its worker) of another commit beside this checkout's, in the same
run: its files are taken with `git archive` and imported under the `llm_shield` name the same way the package
maps them. Redis and the worker are started per tree; models come from `--home` (default: the test
suite's build, `.test-models`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_all import Workers, child_env  # noqa: E402

WORDS = ("the service restarted after the deploy and latency went back to normal for all users in region "
         "eu west while the cache warmed up and the storage team reviewed disk usage").split()
FLOOR = r"""
import json, sys
with open(sys.argv[1], encoding="utf-8") as src, open(sys.argv[2], "w", encoding="utf-8") as out:
    for n, line in enumerate(src, 1):
        row = json.loads(line)
        out.write(json.dumps({"id": f"{sys.argv[1]}:{n}", "source": {"uri": sys.argv[1], "line": n},
                              "valid": True, "risk_score": 0.0, "text_chars": len(row["text"])}) + "\n")
"""
#: Runs whose median a start (one-row run) or the cached run is.
RUNS = 3
CPU_OF = ("import resource, subprocess, sys\n"
          "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
          "if p.returncode: sys.stderr.buffer.write(p.stderr[-3000:]); sys.exit(p.returncode)\n"
          "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
          "print(u.ru_utime + u.ru_stime)\n")


def write_rows(path: Path, n: int, tag: str) -> Path:
    rng = random.Random(11)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"text": f"{tag} {i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24)))})
                    + "\n")
    return path


def cpu_seconds(argv: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of a command, from a fresh wrapper process (so only it counts)."""
    proc = subprocess.run([sys.executable, "-c", CPU_OF, *argv], env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{argv[:4]} failed: {proc.stderr[-2000:]}")
    return float(proc.stdout)


def farm(rev: str, into: Path) -> Path:
    """A folder whose `llm_shield` package is commit `rev`'s code, mapped as pyproject's package-dir maps it."""
    tree = into / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    pkg = into / "site" / "llm_shield"
    pkg.mkdir(parents=True)
    for item in (tree / "shield").iterdir():
        (pkg / item.name).symlink_to(item)
    for name, folder in (("worker", "worker"), ("producer", "producer"), ("builddata", "data")):
        (pkg / name).symlink_to(tree / folder)
    return into / "site"


def measure(label: str, site: Path | None, home: Path, rows: int, work: Path) -> dict[str, float]:
    from llm_shield.local_redis import LocalRedis

    extra = {"PYTHONPATH": f"{site}{os.pathsep}{REPO}"} if site else {}
    env = child_env(home, extra)
    if site:  # the baseline's code must win over this checkout's (the editable install is a finder, not a path)
        env["PYTHONPATH"] = str(site)
    data = write_rows(work / f"{label}.jsonl", rows, label)
    one = write_rows(work / f"{label}-one.jsonl", 1, label + "-one")
    # one-row files of texts seen nowhere else: their row goes to the worker (the first one warms that path)
    one_sent = [write_rows(work / f"{label}-one-sent-{i}.jsonl", 1, f"{label}-one-sent-{i}") for i in range(1 + RUNS)]
    with LocalRedis.start(work / f"redis-{label}") as server:
        workers = Workers(server.url, ["int8"], 1, env, work)
        try:
            workers.wait_ready()
            scan = [sys.executable, "-m", "llm_shield.cli", "scan", "--broker", server.url, "--no-progress",
                    "--overwrite"]
            cpu_seconds([*scan, str(one), "-o", str(work / "one.out")], env)  # warm: bytecode, served models
            start = median(cpu_seconds([*scan, str(one), "-o", str(work / "one.out")], env)  # cached one-row runs
                           for _ in range(RUNS))
            cpu_seconds([*scan, str(one_sent[0]), "-o", str(work / "one.out")], env)  # warm: the Celery path
            start_sent = median(cpu_seconds([*scan, str(f), "-o", str(work / "one.out")], env) for f in one_sent[1:])
            before = redis_load(server.url)
            sent = cpu_seconds([*scan, str(data), "-o", str(work / f"{label}-sent.out")], env)
            middle = redis_load(server.url)
            cached_runs = [cpu_seconds([*scan, str(data), "-o", str(work / f"{label}-cached.out")], env)]
            after = redis_load(server.url)  # Redis figures: the first cached run's
            cached_runs += [cpu_seconds([*scan, str(data), "-o", str(work / f"{label}-cached.out")], env)
                            for _ in range(RUNS - 1)]
            cached = median(cached_runs)
        finally:
            workers.stop()
    return {"startup_cpu_s": start, "sent_startup_cpu_s": start_sent,
            "sent_rows_per_cpu_s": rows / max(sent - start_sent, 1e-9),
            "cached_rows_per_cpu_s": rows / max(cached - start, 1e-9),
            # Redis: commands (those run inside cache scripts included) and server CPU per row
            "sent_redis_commands_per_row": (middle[0] - before[0]) / rows,
            "sent_redis_cpu_us_per_row": (middle[1] - before[1]) * 1e6 / rows,
            "cached_redis_commands_per_row": (after[0] - middle[0]) / rows,
            "cached_redis_cpu_us_per_row": (after[1] - middle[1]) * 1e6 / rows}


def redis_load(url: str) -> tuple[int, float]:
    """(commands executed so far, CPU seconds used so far) of a Redis server (worker heartbeats included:
    a few per second, next to thousands per second of job traffic)."""
    import redis

    client = redis.Redis.from_url(url)
    calls = sum(int(v["calls"]) for k, v in client.info("commandstats").items())
    cpu = client.info("cpu")
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--baseline", help="a commit to measure beside this checkout (e.g. HEAD~1)")
    parser.add_argument("--home", type=Path, default=REPO / ".test-models")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-producer-") as tmp:
        work = Path(tmp)
        floor_in = write_rows(work / "floor.jsonl", args.rows, "floor")
        env = child_env(args.home)
        floor_start = cpu_seconds([sys.executable, "-c", FLOOR, str(write_rows(work / "f1.jsonl", 1, "f")),
                                   str(work / "f1.out")], env)
        floor = cpu_seconds([sys.executable, "-c", FLOOR, str(floor_in), str(work / "floor.out")], env)
        floor_rate = args.rows / max(floor - floor_start, 1e-9)
        results: dict[str, dict[str, float]] = {}
        if args.baseline:
            results[f"baseline ({args.baseline})"] = measure("baseline", farm(args.baseline, work / "farm"),
                                                             args.home, args.rows, work)
        results["this checkout"] = measure("current", None, args.home, args.rows, work)
    print(f"\nproducer rows per CPU-second (= rows/s per core), {args.rows:,} JSONL rows, process start taken off\n")
    print("| path | " + " | ".join(results) + " | floor: plain json loop |")
    print("|---|" + "---|" * (len(results) + 1))
    for key, title in (("sent_rows_per_cpu_s", "sent to workers (empty cache)"),
                       ("cached_rows_per_cpu_s", "answered from the cache")):
        cells = [f"{r[key]:,.0f} ({r[key] / floor_rate:.2f}× floor)" for r in results.values()]
        print(f"| {title} | " + " | ".join(cells) + f" | {floor_rate:,.0f} |")
    print("\nprocess start taken off (CPU s), one-row runs: " + "; ".join(
        f"{name}: cached {r['startup_cpu_s']:.2f}, sent {r['sent_startup_cpu_s']:.2f}" for name, r in results.items()))
    print("\nRedis per row (commands, those inside the cache's scripts included / server CPU µs):")
    for name, r in results.items():
        print(f"  {name}: sent {r['sent_redis_commands_per_row']:.2f} / {r['sent_redis_cpu_us_per_row']:.1f} µs; "
              f"cached {r['cached_redis_commands_per_row']:.2f} / {r['cached_redis_cpu_us_per_row']:.1f} µs")
    if args.baseline:
        base, cur = list(results.values())
        for key, title in (("sent_rows_per_cpu_s", "sent"), ("cached_rows_per_cpu_s", "cached")):
            print(f"this checkout / baseline, {title}: {cur[key] / base[key]:.2f}×")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "floor_rows_per_cpu_s": floor_rate, **results},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
