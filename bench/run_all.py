"""Every benchmark in one run, side by side, as one table: raw onnxruntime (the limit), one-text-at-a-time
scanning (the peer), the whole system end to end, cached rescans, producer memory, Redis memory per cached
entry, worker scaling and the GPU.

    python bench/run_all.py [--quick] [--json OUT] [--home DIR]

Models come from the catalog of SHIELD_HOME (default ~/.cache/llm-shield; `--home .test-models` for the test
suite's build). The run starts its own redis-server and its own worker (`llm-shield worker`, default pool:
one process per core, one onnxruntime thread each), and waits until its models are loaded, so model loading
is never in a measured time.

The limit is raw onnxruntime on the same model.onnx files, in fresh processes (bench/raw_onnx.py), with the
cores split both ways (one process using every core; one process per core) at every batch size: the best of
them is "what the hardware can do". It is measured while the loaded workers sit idle, right before and after
the end-to-end scan it is compared with (machines are often shared: back-to-back keeps the ratios honest).
End-to-end figures are wall times of `python -m llm_shield.cli scan` subprocesses (process start included, with
bytecode caches as an installed package has them); the producer's own rows/s (its summary line, no process
start) is reported beside the cached rescans.

Sizes: the full run takes about 12 minutes on 2 cores; `--quick` uses tiny inputs (a smoke test, about a
minute) and its figures mean little.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from raw_onnx import make_session, parallel_seconds  # noqa: E402

TASK = "prompt_injection"  # the scanner `llm-shield scan` runs by default
BATCH_SIZES = (8, 16, 32, 64, 128)
ROWS_PER_TASK = 128  # SHIELD_BATCH_SIZE default: rows per task, and the arrival-order baseline's batch

SIZES = {
    # limit_texts/peer_texts: texts per in-process measurement; e2e_a: rows of the (a) file (also the scaling
    # runs); e2e_b: rows of the (b) file, also fed to the arrival-order baseline; mem_lines: the producer memory
    # run; cache_entries: the Redis memory run; repeats: best of N for in-process measurements
    "full": dict(limit_texts=1024, peer_texts=512, e2e_a=16_000, e2e_b=2048, rescan_rows=100_000,
                 mem_lines=1_000_000, cache_entries=20_000, repeats=3, naive_repeats=1),
    "quick": dict(limit_texts=32, peer_texts=16, e2e_a=128, e2e_b=32, rescan_rows=512, mem_lines=20_000,
                  cache_entries=2_000, repeats=1, naive_repeats=1),
}

TARGET_E2E_VS_LIMIT = 0.95
TARGET_E2E_VS_PEER = 2.0
TARGET_MIX_VS_NAIVE = 1.2
TARGET_RESCAN = 20_000.0
TARGET_PRODUCER_MB = 300.0


# -- results --------------------------------------------------------------------------------------------
@dataclass
class Row:
    benchmark: str
    variant: str
    value: float | None
    unit: str  # "rows/s", "texts/s", "MB", "B/entry", ""
    ratio: float | None = None
    ratio_of: str = ""  # what the ratio is relative to
    target: str = ""
    met: bool | None = None  # None: no target
    note: str = ""

    def cells(self) -> list[str]:
        if self.value is None:
            value = self.note or "not measured"
        elif self.unit in ("rows/s", "texts/s"):
            value = f"{self.value:,.0f} {self.unit}"
        elif self.unit == "s":
            value = f"{self.value:.2f} s"
        elif self.unit == "MB":
            value = f"{self.value:,.1f} MB"
        else:
            value = f"{self.value:,.0f} {self.unit}".strip()
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}× {self.ratio_of}".strip()
        met = "—" if self.met is None else ("yes" if self.met else "**no**")
        return [self.benchmark, self.variant, value, ratio, self.target or "—", met]


@dataclass
class Report:
    machine: dict
    rows: list[Row] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  -> {' | '.join(row.cells())}", flush=True)
        return row

    def markdown(self) -> str:
        header = ["benchmark", "variant", "rows/s (or MB)", "ratio", "target", "met?"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row.cells()) + " |" for row in self.sorted()]
        return "\n".join(lines)

    def sorted(self) -> list[Row]:
        """Rows in benchmark order (measurements run in a different order, to keep comparisons close in time)."""
        return sorted(self.rows, key=lambda r: int(r.benchmark.split(".", 1)[0]))

    def to_json(self) -> dict:
        return {"machine": self.machine, "rows": [asdict(r) for r in self.sorted()], "details": self.details}


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# -- machine ----------------------------------------------------------------------------------------------
def cpu_model() -> str:
    from bench_models import cpu_name  # one reading of /proc/cpuinfo for every benchmark

    return cpu_name()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine_info(cores: int) -> dict:
    import onnxruntime as ort

    return {
        "cores": cores,
        "cpu": cpu_model(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "python": platform.python_version(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average_at_start": load_average(),
    }


# -- inputs -------------------------------------------------------------------------------------------------
LOG_TEMPLATES = (  # uniform short log lines, ~30 tokens each
    "2026-11-02T10:{m:02d}:{s:02d}Z INFO api request GET /v1/orders/{i} completed in {ms} ms for user {u}",
    "10:{m:02d}:{s:02d} INFO gateway POST /v1/chat 200 {ms}ms user=u-{u} region=eu-west-1 req={i}",
    "2026-11-02 10:{m:02d}:{s:02d} WARN billing invoice {i} for customer {u} retried after {ms} ms timeout",
    "10:{m:02d}:{s:02d} DEBUG retriever fetched {k} documents for request {i} from index shard {u} in {ms} ms",
)


def log_line(i: int) -> str:
    t = LOG_TEMPLATES[i % len(LOG_TEMPLATES)]
    return t.format(i=100000 + i, m=(i // 60) % 60, s=i % 60, ms=(i * 37) % 900 + 5, u=(i * 7919) % 10000,
                    k=i % 9 + 1)


def log_lines(n: int) -> list[str]:
    return [log_line(i) for i in range(n)]


TOPICS = ("a trip to Lisbon", "my quarterly sales report", "a birthday party for my son", "a Python script that "
          "renames photos", "the onboarding guide for new hires", "a vegetarian dinner for six", "our cloud bill",
          "a cover letter for a nursing job", "the history of the printing press", "a workout plan for beginners")
ASKS = ("Can you help me with {t}?", "Please summarise {t} in three bullet points.",
        "What are the main risks of {t}, and how should I plan for them?",
        "I need a short, friendly email about {t} that I can send to my team before Friday.",
        "Thanks, that was useful. Could you make the part about {t} shorter and add a checklist at the end?")
SENTENCES = (
    "The committee reviewed the budget for the next fiscal year and approved most of the proposed changes.",
    "Our warehouse in the north region reported a small delay caused by the winter storms last week.",
    "Customers praised the new checkout flow, although several asked for more payment options.",
    "The engineering team migrated the reporting service to the new cluster without downtime.",
    "In the second quarter, revenue from subscriptions grew faster than revenue from one-off sales.",
    "The museum's collection includes maps, letters and printed books from the sixteenth century.",
    "Volunteers planted more than two thousand trees along the river during the spring campaign.",
    "The support backlog fell by a third after the help centre articles were rewritten.",
    "Researchers compared three irrigation methods and measured water use on each test field.",
    "The city council will publish the results of the public consultation at the end of the month.",
    "Shipping costs rose slightly, so the team renegotiated contracts with two of its carriers.",
    "The new onboarding course takes about four hours and can be completed over several days.",
)


def chat_turn(rng: random.Random) -> str:
    text = rng.choice(ASKS).format(t=rng.choice(TOPICS))
    if rng.random() < 0.7:
        text = f"User {rng.randint(1, 5000)}: " + text + " " + " ".join(rng.sample(SENTENCES, rng.randint(1, 3)))
    return text


def long_document(rng: random.Random) -> str:
    """A document of ~300-900 tokens: several 256-token windows."""
    return " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(18, 50)))


def mixed_rows(n: int, seed: int = 7) -> list[str]:
    """A realistic mix: ~60% short log lines (varied lengths), ~20% chat turns, ~5% long documents
    (windowed), ~12% repeats of recent rows (health checks, retried requests, copied prompts)."""
    rng = random.Random(seed)
    rows: list[str] = []
    for i in range(n):
        r = rng.random()
        if r < 0.10 and rows:
            rows.append(rows[rng.randrange(max(0, len(rows) - 500), len(rows))])
        elif r < 0.70:
            line = log_line(50_000 + i)
            if rng.random() < 0.3:  # some longer log lines
                line += f" trace={uuid.UUID(int=rng.getrandbits(128)).hex} attempt={rng.randint(1, 3)}"
            rows.append(line)
        elif r < 0.95:
            rows.append(chat_turn(rng))
        else:
            rows.append(long_document(rng))
    return rows


def write_text_lines(path: Path, rows: Sequence[str]) -> Path:
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: Sequence[str]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(rows):
            f.write(json.dumps({"id": i, "text": text}) + "\n")
    return path


def write_many_log_lines(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n, 10_000):
            f.write("".join(log_line(i) + "\n" for i in range(start, min(n, start + 10_000))))
    return path


# -- raw onnxruntime ----------------------------------------------------------------------------------------
def pad(windows: Sequence[Sequence[int]], names: set[str], pad_id: int = 0) -> dict:
    import numpy as np

    width = max(len(w) for w in windows)
    ids = np.full((len(windows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(windows), width), dtype=np.int64)
    for r, w in enumerate(windows):
        ids[r, : len(w)] = w
        mask[r, : len(w)] = 1
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {k: v for k, v in feeds.items() if k in names}


@dataclass(frozen=True)
class Split:
    """How the cores are shared: `processes` processes with `threads` onnxruntime threads each."""

    processes: int
    threads: int

    @property
    def label(self) -> str:
        return f"{self.processes} process{'es' if self.processes > 1 else ''} × {self.threads} thread" + \
            ("s" if self.threads > 1 else "")


def splits(cores: int) -> list[Split]:
    """One process using every core, and one process per core (the workers' default)."""
    return [Split(1, cores)] + ([Split(cores, 1)] if cores > 1 else [])


@dataclass
class RawModel:
    variant: str
    folder: Path
    session: object  # an in-process session (the peer runs here)
    names: set[str]
    tokenizer: object  # worker.tokenizer.TextTokenizer (windows as the workers cut them)
    max_length: int
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def seconds(self, cases: Sequence[Sequence[dict]], split: Split, repeats: int) -> list[float]:
        """Seconds per case in fresh processes sharing the cores as `split` says (bench/raw_onnx.py)."""
        return parallel_seconds(self.folder / "model.onnx", cases, split.processes, split.threads, repeats,
                                self.providers)


def load_raw(variant: str, settings, catalog, threads: int,  # noqa: ANN001
             providers: Sequence[str] = ("CPUExecutionProvider",)) -> RawModel:
    from llm_shield.registry import ensure_available
    from llm_shield.worker.tokenizer import TextTokenizer

    entry = catalog.find(TASK, variant)
    folder = ensure_available(TASK, variant, settings, catalog)
    session = make_session(folder / "model.onnx", threads, providers)
    tok = TextTokenizer(folder / entry.tokenizer, entry.max_length, settings.window_stride, settings.max_windows)
    return RawModel(variant, folder, session, {i.name for i in session.get_inputs()}, tok, entry.max_length,
                    tuple(providers))


@dataclass
class Limit:
    """The best raw texts/s over core splits and batch sizes, and where it was found."""

    rate: float
    split: Split
    batch: int
    sweep: dict[str, dict[int, float]]  # split label -> batch size -> texts/s


def short_feeds(model: RawModel, texts: list[str], batch: int) -> list[dict]:
    windows = [w.ids for w in model.tokenizer.encode(texts).windows]
    assert len(windows) == len(texts), "uniform short lines must be one window each"
    return [pad(windows[i:i + batch], model.names) for i in range(0, len(windows), batch)]


def bench_limit(model: RawModel, texts: list[str], cores: int, sizes: Sequence[int] = BATCH_SIZES) -> Limit:
    """Raw texts/s of every core split at every batch size, texts pre-tokenized and pre-padded (only
    session.run is timed); the best of them is the limit."""
    sizes = [b for b in sizes if b <= len(texts)] or [len(texts)]
    cases = [short_feeds(model, texts, b) for b in sizes]
    sweep: dict[str, dict[int, float]] = {}
    best: tuple[float, Split, int] = (0.0, Split(1, cores), sizes[0])
    for split in splits(cores):
        rates = {b: len(texts) / t for b, t in zip(sizes, model.seconds(cases, split, 1))}
        sweep[split.label] = {b: round(r, 1) for b, r in rates.items()}
        b = max(rates, key=rates.get)
        best = max(best, (rates[b], split, b), key=lambda x: x[0])
    return Limit(best[0], best[1], best[2], sweep)


def limit_at(model: RawModel, texts: list[str], split: Split, batch: int, repeats: int) -> float:
    """Raw texts/s at one split and batch size (measured right before and after a scan it is compared with)."""
    return len(texts) / model.seconds([short_feeds(model, texts, batch)], split, repeats)[0]


def bench_peer(model: RawModel, texts: list[str], repeats: int) -> float:
    """One text at a time, as llm-guard scans: tokenize (HF tokenizers, truncated to the model's length) and
    run per text, in one process whose session uses every core; tokenization included."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model.folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(model.max_length)

    def one(text: str) -> None:
        enc = tok.encode(text)
        ids = np.array([enc.ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
                 "token_type_ids": np.array([enc.type_ids], dtype=np.int64)}
        model.session.run(["logits"], {k: v for k, v in feeds.items() if k in model.names})

    one(texts[0])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for t in texts:
            one(t)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def bench_peer_windows(model: RawModel, rows: list[str]) -> float:
    """One text at a time, with long texts scored window by window as the system scores them (the same
    windows, each run alone: the same work, without batching or dedupe); tokenization included."""
    def one(text: str) -> None:
        for w in model.tokenizer.encode([text]).windows:
            model.session.run(["logits"], pad([w.ids], model.names))

    one(rows[0])
    start = time.perf_counter()
    for t in rows:
        one(t)
    return len(rows) / (time.perf_counter() - start)


def bench_arrival_order(model: RawModel, rows: list[str], cores: int, repeats: int) -> tuple[float, dict]:
    """Rows in file order, ROWS_PER_TASK rows per run, every window of those rows in one batch padded to the
    longest; no dedupe, no sorting, no token budget; best of the core splits. Tokenization and padding are
    done first and not timed."""
    feeds, windows, tokens, padded = [], 0, 0, 0
    for i in range(0, len(rows), ROWS_PER_TASK):
        enc = model.tokenizer.encode(rows[i:i + ROWS_PER_TASK])
        ws = [w.ids for w in enc.windows]
        feeds.append(pad(ws, model.names))
        windows += len(ws)
        tokens += sum(len(w) for w in ws)
        padded += len(ws) * max(len(w) for w in ws)
    per_split = {split.label: len(rows) / model.seconds([feeds], split, repeats)[0] for split in splits(cores)}
    best = max(per_split, key=per_split.get)
    return per_split[best], {"windows": windows, "real_tokens": tokens, "padded_tokens": padded,
                             "padding_share": round(1 - tokens / padded, 3), "best_split": best,
                             "rows_per_s": {k: round(v, 1) for k, v in per_split.items()}}


# -- the system ---------------------------------------------------------------------------------------------
def child_env(home: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SHIELD_REDIS_URL", "SHIELD_CACHE_URL", "SHIELD_INTRA_OP_THREADS", "SHIELD_BATCH_SIZE",
                        "SHIELD_WORKER_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR")}
    if home is not None:
        env["SHIELD_HOME"] = str(home)
        env["SHIELD_CATALOG"] = str(home / "catalog.json")
    env["SHIELD_METRICS_PORT"] = "0"
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # start-up with bytecode caches, as an installed package has them
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


class Workers:
    """`llm-shield worker` (one node: Celery prefork pool, `processes` pool processes) for the given variant
    queues, in its own process group; ready once every pool process has loaded its models."""

    def __init__(self, broker_url: str, variants: Sequence[str], processes: int, env: dict[str, str],
                 log_dir: Path) -> None:
        import redis

        from llm_shield.contract import live_workers_key

        self.url, self.variants, self.processes = broker_url, list(variants), processes
        self.client = redis.Redis.from_url(broker_url)
        for v in self.variants:  # a previous pool's entries must not count as ready
            self.client.delete(live_workers_key(v))
        self.log_path = log_dir / f"worker-{'-'.join(self.variants)}-{processes}p-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "wb")
        argv = [sys.executable, "-m", "llm_shield.cli", "worker", "--concurrency", str(processes), "--broker",
                broker_url, "--name", f"bench-{uuid.uuid4().hex[:6]}@%h"]
        for v in self.variants:
            argv += ["--variant", v]
        self.proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 300.0) -> "Workers":
        from llm_shield.liveness import live_members

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text(errors='replace')[-3000:]}")
            if all(len(live_members(self.client, v)) >= self.processes for v in self.variants):
                time.sleep(0.5)  # let the pool's consumer settle
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready in {timeout:.0f} s: {self.log_path}")

    def pool_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        from llm_shield.local_redis import stop_group

        stop_group(self.proc, 30)
        self._log.close()

    def __enter__(self) -> "Workers":
        return self.wait_ready()

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass
class ScanRun:
    rows: int
    seconds: float  # wall time of the subprocess
    summary: str
    producer_rate: float | None  # the producer's own rows/s (from its summary; excludes process start)
    ml_rows: int | None = None  # rows whose prompt_injection verdict came from the model
    hit_rate: float | None = None  # the producer's "cache hit rate" (of rows that needed a model score)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def run_scan(path: Path, out: Path, broker: str, env: dict[str, str], variant: str = "int8",
             extra: Sequence[str] = (), check_ml: bool = False) -> ScanRun:
    argv = [sys.executable, "-m", "llm_shield.cli", "scan", str(path), "-o", str(out), "--broker", broker,
            "--no-progress", "--overwrite", "--variant", variant, *extra]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"scan failed ({proc.returncode}): {proc.stderr[-3000:]}")
    m_rows = re.search(r"rows out: (\d+)", proc.stderr)
    m_err = re.search(r"errors: (\d+)", proc.stderr)
    m_rate = re.search(r"rows/s: ([\d.]+)", proc.stderr)
    rows = int(m_rows.group(1)) if m_rows else 0
    if m_err and int(m_err.group(1)):
        raise RuntimeError(f"scan of {path} gave {m_err.group(1)} error rows: {proc.stderr[-2000:]}")
    summary = "\n".join(proc.stderr.strip().splitlines()[-2:])
    m_hits = re.search(r"cache hit rate: ([\d.]+)%", proc.stderr)
    run = ScanRun(rows, seconds, summary, float(m_rate.group(1)) if m_rate else None,
                  hit_rate=float(m_hits.group(1)) / 100 if m_hits else None)
    if check_ml:
        run.ml_rows = 0
        with open(out, encoding="utf-8") as f:
            for line in f:
                if json.loads(line)["scanners"][TASK]["method"] == "ml":
                    run.ml_rows += 1
    return run


def peak_rss_of(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of a command, from getrusage(RUSAGE_CHILDREN) in a fresh wrapper process
    (so no other child of this process counts)."""
    code = ("import resource, subprocess, sys, time\n"
            "t = time.perf_counter()\n"
            "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
            "t = time.perf_counter() - t\n"
            "if p.returncode: sys.stderr.buffer.write(p.stderr[-3000:]); sys.exit(p.returncode)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, t)\n")
    proc = subprocess.run([sys.executable, "-c", code, *argv], env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"producer memory run failed: {proc.stderr[-3000:]}")
    kb, seconds = proc.stdout.split()
    return int(kb) / 1024, float(seconds)


def clear_cache(url: str) -> None:
    from llm_shield.cache import ResultCache
    from llm_shield.config import CacheSettings

    cache = ResultCache.from_url(url, CacheSettings())
    cache.clear()
    cache._client.close()


def cache_entry_memory(url: str, entries: int) -> float:
    """INFO used_memory delta per entry over `entries` inserts (bench_cache's values and key layout)."""
    import redis

    from bench_cache import NAMESPACE, batches, digests, used_memory, value_for
    from llm_shield.cache import ResultCache
    from llm_shield.config import CacheSettings

    client = redis.Redis.from_url(url)
    cache = ResultCache(client, CacheSettings(max_entries=entries, ttl_seconds=3600), namespace=NAMESPACE)
    cache.clear()
    items = [(key, value_for(i)) for i, key in enumerate(digests("fill", entries))]
    before = used_memory(client)
    for batch in batches(items, ROWS_PER_TASK):
        cache.set_many(batch)
    per_entry = (used_memory(client) - before) / entries
    cache.clear()
    client.close()
    return per_entry


# -- main ---------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs (a smoke test; figures mean little)")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the table as JSON here")
    parser.add_argument("--home", type=Path, help="SHIELD_HOME whose catalog holds the models "
                                                  "(default: $SHIELD_HOME or ~/.cache/llm-shield)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (inputs, outputs, worker logs)")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]

    home = args.home.resolve() if args.home else None
    if home is not None:
        os.environ["SHIELD_HOME"] = str(home)
        os.environ["SHIELD_CATALOG"] = str(home / "catalog.json")
    os.environ["SHIELD_METRICS_PORT"] = "0"
    for name in ("SHIELD_INTRA_OP_THREADS", "SHIELD_WORKER_CONCURRENCY"):
        os.environ.pop(name, None)

    import onnxruntime as ort

    from llm_shield.local_redis import LocalRedis
    from llm_shield.registry import load_catalog
    from llm_shield.settings import ShieldSettings
    from llm_shield.node import available_cpus

    settings = ShieldSettings()
    catalog = load_catalog(settings.catalog_location)
    cores = available_cpus()
    gpu = "CUDAExecutionProvider" in ort.get_available_providers()
    report = Report(machine_info(cores))
    m = report.machine
    print(f"machine: {m['cores']} cores ({m['cpu']}), onnxruntime {m['onnxruntime']}, python {m['python']}, "
          f"{m['date']}, load average {m['load_average_at_start']}")
    print(f"models: {settings.catalog_location} (task {TASK}); sizes: {'quick' if args.quick else 'full'} {size}")
    work = Path(tempfile.mkdtemp(prefix="shield-bench-"))
    started = time.monotonic()
    env = child_env(home)

    def step(title: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {title}", flush=True)

    try:
        short = log_lines(size["limit_texts"])
        mix = mixed_rows(size["e2e_b"])
        short_rows = log_lines(size["e2e_a"])
        short_file = write_text_lines(work / "short.log", short_rows)
        mix_file = write_jsonl(work / "mix.jsonl", mix)
        repeat = -(-size["rescan_rows"] // len(short_rows))
        big_rescan_file = write_text_lines(work / "short-repeated.log", short_rows * repeat)
        warm_file = write_text_lines(work / "warm.log", [f"warm-up line {i} of the benchmark" for i in range(64)])
        report.details["inputs"] = {"short_rows": size["e2e_a"], "mix_rows": len(mix),
                                    "mix_distinct": len(set(mix)), "rescan_rows": len(short_rows) * repeat}
        default = Split(cores, 1)  # what `llm-shield worker` runs when no concurrency is given
        limits: dict[str, Limit] = {}
        limit_rate: dict[str, float] = {}
        peers: dict[str, float] = {}
        naive: dict[str, float] = {}
        raw: dict[str, RawModel] = {}
        e2e: dict[tuple[str, str], ScanRun] = {}

        step("starting redis-server")
        server = LocalRedis.start(work / "redis")
        url = server.url
        try:
            variants = ["int8", "fp32"]
            step(f"starting the worker with its default pool ({'+'.join(variants)} queues, {default.label}), "
                 "waiting for its models to load")
            with Workers(url, variants, default.processes, env, work):
                # Each comparison is measured back to back: raw onnxruntime runs in fresh processes while the
                # (loaded, idle) workers wait, right before and after the end-to-end scan it is compared with.
                for variant in ("int8", "fp32"):
                    run_scan(warm_file, work / "warm.out", url, env, variant)  # first-run costs, off the clock
                    model = raw[variant] = load_raw(variant, settings, catalog, cores)
                    step(f"{variant}: raw onnxruntime, core splits {' / '.join(s.label for s in splits(cores))}, "
                         "batch sweep")
                    if variant == "int8":
                        toks = [len(w.ids) for w in model.tokenizer.encode(short).windows]
                        report.details["short_tokens_mean"] = round(sum(toks) / len(toks), 1)
                        enc = model.tokenizer.encode(mix)
                        report.details["mix_windows"] = len(enc.windows)
                        report.details["mix_long_rows"] = sum(c > 1 for c in enc.window_counts)
                    lim = limits[variant] = bench_limit(model, short, cores)
                    report.details[f"limit_{variant}_sweep"] = lim.sweep
                    before = limit_at(model, short, lim.split, lim.batch, size["repeats"])
                    clear_cache(url)
                    step(f"{variant}: scan (a), cold cache")
                    e2e[(variant, "a")] = run_scan(short_file, work / f"a-{variant}.out", url, env, variant,
                                                   check_ml=True)
                    after = limit_at(model, short, lim.split, lim.batch, size["repeats"])
                    limit_rate[variant] = (before + after) / 2
                    report.details[f"limit_{variant}_before_after"] = [round(before, 1), round(after, 1)]
                    if variant == "int8":
                        step("int8: cached rescans of (a), and of (a) repeated")
                        e2e[(variant, "a-rescan")] = run_scan(short_file, work / "a-int8.out", url, env, variant)
                        e2e[(variant, "big-rescan")] = run_scan(big_rescan_file, work / "big-rescan.out", url, env,
                                                                variant)
                        (work / "big-rescan.out").unlink()
                    step(f"{variant}: peer (one text at a time), then arrival-order raw on (b)")
                    peers[variant] = bench_peer(model, short[: size["peer_texts"]], size["repeats"])
                    peers[variant + "-b"] = bench_peer_windows(model, mix)
                    report.details[f"peer_{variant}_b_truncating"] = round(bench_peer(model, mix, 1), 1)
                    if cores > 1:  # how the peer's one-text runs gain from threads (the system adds processes)
                        one_thread = replace(model, session=make_session(model.folder / "model.onnx", 1))
                        report.details[f"peer_{variant}_1_thread"] = round(
                            bench_peer(one_thread, short[: size["peer_texts"]], size["repeats"]), 1)
                    naive[variant], info = bench_arrival_order(model, mix, cores, size["naive_repeats"])
                    report.details[f"arrival_order_{variant}"] = info
                    clear_cache(url)
                    step(f"{variant}: scan (b), cold cache")
                    e2e[(variant, "b")] = run_scan(mix_file, work / f"b-{variant}.out", url, env, variant,
                                                   check_ml=True)
                    if variant == "int8":
                        step("int8: cached rescan of (b)")
                        e2e[(variant, "b-rescan")] = run_scan(mix_file, work / "b-int8.out", url, env, variant)
                    spread = abs(before - after) / limit_rate[variant]
                    for label, rates in lim.sweep.items():
                        best_b = max(rates, key=rates.get)
                        report.add(Row("1. limit: raw onnxruntime", f"{variant}, (a) short lines, pre-tokenized, "
                                       f"{label}, best batch {best_b} of {'/'.join(map(str, rates))}",
                                       rates[best_b], "texts/s"))
                    report.add(Row("1. limit: raw onnxruntime", f"{variant}, (a): THE LIMIT = best split and batch "
                                   f"({lim.split.label}, batch {lim.batch}), mean of before/after the e2e scan "
                                   f"(which differ by {spread:.0%})", limit_rate[variant], "texts/s",
                                   *((None, "") if variant == "int8" else
                                     (ratio(limit_rate[variant], limit_rate["int8"]), "of int8"))))
                    report.add(Row("1. limit: raw onnxruntime", f"{variant}, (b) mix in arrival order, "
                                   f"{ROWS_PER_TASK} rows/batch, padded to longest, no dedupe/sort, best split "
                                   f"({info['best_split']})", naive[variant], "rows/s",
                                   ratio(naive[variant], limit_rate[variant]), "of (a) limit"))
                    report.add(Row("2. peer: one text at a time", f"{variant}, (a) short lines, tokenize + run per "
                                   f"text, 1 process × {cores} threads", peers[variant], "texts/s",
                                   ratio(peers[variant], limit_rate[variant]), "of limit"))
                    report.add(Row("2. peer: one text at a time", f"{variant}, (b) mix, every window of a long "
                                   "document run alone (the system's windows: the same work)",
                                   peers[variant + "-b"], "rows/s"))
                    for label in ("a", "b"):
                        run = e2e[(variant, label)]
                        if run.ml_rows != run.rows:
                            print(f"  note: ({label}) {variant}: {run.rows - run.ml_rows} rows decided without "
                                  "the model", flush=True)
                step("fixed cost of one scan command (1 row, cached)")
                one = write_text_lines(work / "one.log", [log_line(0)])
                run_scan(one, work / "one.out", url, env, "int8")
                fixed = min(run_scan(one, work / "one.out", url, env, "int8").seconds for _ in range(2))
                from llm_shield.cache import ResultCache

                real = ResultCache.from_url(url, settings.cache_settings()).stats()
            # 7. scaling: the same scan on a pool of one process using every core, against its own raw limit
            scale = {default.label: (e2e[("int8", "a")].rate, limit_rate["int8"] if limits["int8"].split == default
                                     else None)}
            if cores > 1:
                single = Split(1, cores)
                step(f"scaling: starting a pool of {single.label}")
                with Workers(url, ["int8"], 1, env, work):
                    run_scan(warm_file, work / "warm.out", url, env, "int8")
                    clear_cache(url)
                    step(f"scaling: {single.label}, (a) int8, cold cache")
                    rate = run_scan(short_file, work / "scale.out", url, env, "int8").rate
                    batch = max(limits["int8"].sweep[single.label], key=limits["int8"].sweep[single.label].get)
                    scale[single.label] = (rate, limit_at(raw["int8"], short, single, batch, size["repeats"]))
                if scale[default.label][1] is None:
                    rates = limits["int8"].sweep[default.label]
                    batch = max(rates, key=rates.get)
                    scale[default.label] = (scale[default.label][0],
                                            limit_at(raw["int8"], short, default, batch, size["repeats"]))

            if gpu:
                from llm_shield.node import GPU_PROCESSES

                gpu_pool = min(GPU_PROCESSES, cores)
                step(f"fp16: raw onnxruntime on CUDAExecutionProvider, then a GPU pool ({gpu_pool} processes) scans (a)")
                model = raw["fp16"] = load_raw("fp16", settings, catalog, cores,
                                               ("CUDAExecutionProvider", "CPUExecutionProvider"))
                gpu_sizes = (*BATCH_SIZES, 256, 512)
                rates = {b: len(short) / t for b, t in zip(gpu_sizes, model.seconds(
                    [short_feeds(model, short, b) for b in gpu_sizes], Split(1, cores), size["repeats"]))}
                best_b = max(rates, key=rates.get)
                limits["fp16"] = Limit(rates[best_b], Split(1, cores), best_b, {"1 process": rates})
                limit_rate["fp16"] = rates[best_b]
                report.details["limit_fp16_sweep"] = {str(k): round(v, 1) for k, v in rates.items()}
                with Workers(url, ["fp16"], gpu_pool, env, work):
                    run_scan(warm_file, work / "warm.out", url, env, "fp16")
                    clear_cache(url)
                    e2e[("fp16", "a")] = run_scan(short_file, work / "a-fp16.out", url, env, "fp16")

            for variant in ("int8", "fp32"):
                a, b = e2e[(variant, "a")], e2e[(variant, "b")]
                title = "3. system e2e, default pool"
                report.add(Row(title, f"{variant}, {default.label}, (a) short lines, {a.rows:,} rows",
                               a.rate, "rows/s", ratio(a.rate, limit_rate[variant]), "of limit",
                               f"≥ {TARGET_E2E_VS_LIMIT}× limit", (ratio(a.rate, limit_rate[variant]) or 0)
                               >= TARGET_E2E_VS_LIMIT))
                report.add(Row(title, f"{variant}, (a) short lines, vs peer",
                               a.rate, "rows/s", ratio(a.rate, peers[variant]), "of peer",
                               f"≥ {TARGET_E2E_VS_PEER}× peer", (ratio(a.rate, peers[variant]) or 0)
                               >= TARGET_E2E_VS_PEER))
                report.add(Row(title, f"{variant}, (b) mix, vs peer on (b)", b.rate, "rows/s",
                               ratio(b.rate, peers[variant + "-b"]), "of peer",
                               f"≥ {TARGET_E2E_VS_PEER}× peer", (ratio(b.rate, peers[variant + "-b"]) or 0)
                               >= TARGET_E2E_VS_PEER))
                report.add(Row(title, f"{variant}, (b) mix, {b.rows:,} rows "
                               f"({report.details['inputs']['mix_distinct']:,} distinct)", b.rate, "rows/s",
                               ratio(b.rate, naive[variant]), "of arrival-order raw",
                               f"≥ {TARGET_MIX_VS_NAIVE}× arrival-order raw",
                               (ratio(b.rate, naive[variant]) or 0) >= TARGET_MIX_VS_NAIVE))
            for label, what in (("a", f"(a) {e2e[('int8', 'a-rescan')].rows:,} rows"),
                                ("big", f"(a) {repeat} times over, {e2e[('int8', 'big-rescan')].rows:,} rows"),
                                ("b", f"(b) {e2e[('int8', 'b-rescan')].rows:,} rows")):
                r = e2e[("int8", label + "-rescan")]
                report.add(Row("4. cached rescan", f"int8, {what}, wall time of the command (start-up included), "
                               f"cache hit rate {r.hit_rate or 0:.0%}", r.rate, "rows/s",
                               ratio(r.rate, e2e[("int8", "a" if label == "big" else label)].rate), "of first scan",
                               f"≥ {TARGET_RESCAN:,.0f} rows/s", r.rate >= TARGET_RESCAN))
                if r.producer_rate:
                    report.add(Row("4. cached rescan", f"int8, {what}, producer's own timer (no process start)",
                                   r.producer_rate, "rows/s", None, "", f"≥ {TARGET_RESCAN:,.0f} rows/s",
                                   r.producer_rate >= TARGET_RESCAN))
            report.add(Row("4. cached rescan", "fixed cost of one scan command (1 cached row), seconds",
                           fixed, "s"))
            report.details["fixed_scan_seconds"] = round(fixed, 3)
            report.details["e2e"] = {f"{v}-{k}": asdict(r) for (v, k), r in e2e.items()}

            # -- 5. producer memory ---------------------------------------------------------------------------
            n = size["mem_lines"]
            step(f"producer memory: {n:,} log lines, --mode heuristic_only")
            big = write_many_log_lines(work / "big.log", n)
            mb, seconds = peak_rss_of([sys.executable, "-m", "llm_shield.cli", "scan", str(big), "-o",
                                       str(work / "big.out"), "--broker", url, "--no-progress", "--overwrite",
                                       "--mode", "heuristic_only"], env)
            big.unlink()
            (work / "big.out").unlink(missing_ok=True)
            report.add(Row("5. producer memory", f"peak RSS, {n:,} log lines, --mode heuristic_only (same "
                           f"streaming reader/job/writer path; no worker round trips), {n / seconds:,.0f} rows/s",
                           mb, "MB", None, "", f"< {TARGET_PRODUCER_MB:.0f} MB", mb < TARGET_PRODUCER_MB))

            # -- 6. Redis memory per cached entry -----------------------------------------------------------------
            step(f"redis memory: {size['cache_entries']:,} entries")
            per_entry = cache_entry_memory(url, size["cache_entries"])
            report.add(Row("6. redis memory per cached entry", f"INFO used_memory delta over "
                           f"{size['cache_entries']:,} inserted entries (~{len(__import__('bench_cache').value_for(0))}"
                           " B values)", per_entry, "B/entry"))
            if real.entries and real.memory_bytes:
                report.add(Row("6. redis memory per cached entry", f"real entries after the scans ({real.entries:,}, "
                               f"MEMORY USAGE, {'exact' if real.memory_exact else 'sampled'})",
                               real.memory_bytes / real.entries, "B/entry"))

            # -- 7. scaling -------------------------------------------------------------------------------------
            for label, (rate, raw_rate) in scale.items():
                report.add(Row("7. scaling (a), int8", f"pool of {label}" + (" (the default)" if label == default.label
                                                                             else ""), rate, "rows/s",
                               ratio(rate, raw_rate), "of raw onnxruntime with the same split"))
            best_label = max(scale, key=lambda k: scale[k][0])
            report.add(Row("7. scaling (a), int8", f"per-node ceiling ({cores} cores, best pool: {best_label}); "
                           f"{scale[best_label][0] / cores:,.0f} rows/s per core", scale[best_label][0], "rows/s",
                           ratio(scale[best_label][0], limit_rate["int8"]), "of the int8 limit"))

            # -- 8. GPU ---------------------------------------------------------------------------------------------
            if gpu:
                a = e2e[("fp16", "a")]
                report.add(Row("8. GPU", f"fp16 CUDA raw onnxruntime, (a), best batch {limits['fp16'].batch}",
                               limit_rate["fp16"], "texts/s", ratio(limit_rate["fp16"], limit_rate["int8"]),
                               "of CPU int8 limit"))
                report.add(Row("8. GPU", f"fp16 CUDA system e2e, (a), {a.rows:,} rows", a.rate, "rows/s",
                               ratio(a.rate, limit_rate["fp16"]), "of fp16 limit"))
            else:
                report.add(Row("8. GPU", "fp16, CUDAExecutionProvider", None, "", note="not measured (no GPU)"))
        finally:
            server.stop()
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    report.machine["load_average_at_end"] = load_average()
    report.machine["seconds"] = round(time.monotonic() - started, 1)
    print()
    print(f"machine: {m['cores']} cores ({m['cpu']}), onnxruntime {m['onnxruntime']}, {m['date']}; load average "
          f"{m['load_average_at_start']} at start, {m['load_average_at_end']} at end; took {m['seconds']} s")
    print(f"(a) {size['e2e_a']:,} uniform short log lines (~{report.details['short_tokens_mean']} tokens); (b) "
          f"{len(mix):,} rows: log lines, chat turns, {report.details['mix_long_rows']} long documents "
          f"({report.details['mix_windows']:,} windows), {len(mix) - len(set(mix)):,} repeated rows")
    print()
    print(report.markdown())
    if args.json_out:
        args.json_out.write_text(json.dumps(report.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
