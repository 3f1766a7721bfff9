"""`llm-shield scan --distributed`: splits planned at line boundaries, parts + manifest written by real workers,
kills of a worker and of the submitting process survived by --resume, merged output identical to a
single-producer scan."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from llm_shield.cache import ResultCache
from llm_shield.config import CacheSettings
from llm_shield.contract import ReadSpec
from llm_shield.errors import ConfigError, InputError, ScanIncompleteError
from llm_shield.producer.readers import iter_records
from llm_shield.producer.splits import (
    MANIFEST,
    PartStore,
    fingerprint,
    line_boundaries,
    merge_parts,
    plan_splits,
    read_split,
)
from tests.test_scan import ATTACK, REPO, cli
from tests.workers import WorkerProcess

WORDS = ("the deploy finished and latency is back to normal for every region after the cache warmed up "
         "while the storage team reviewed the weekly report on disk usage").split()


def write_inputs(folder: Path, lines: int, seed: int = 3) -> list[Path]:
    """A JSONL file (with a bad row and attacks), a text file with an empty line, a small CSV: distinct texts."""
    rng = random.Random(seed)
    texts = [f"{i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for i in range(lines)]
    texts[5] = texts[lines // 2] = f"{ATTACK} ({lines})"
    rows = [json.dumps({"text": t}) for t in texts]
    rows[17] = "{not json"
    a = folder / "a.jsonl"
    a.write_text("\n".join(rows) + "\n")
    b = folder / "b.txt"
    b.write_text("\n".join(f"log line {i} " + rng.choice(WORDS) for i in range(lines // 3)) + "\n\nlast line\n")
    c = folder / "c.csv"
    c.write_text("id,text\n" + "".join(f"{i},row {i} of the csv\n" for i in range(40)))
    return [a, b, c]


# -- planning and reading, no workers ------------------------------------------------------------------------


@pytest.mark.parametrize("split_bytes", [4096, 10_000, 65_536, 10**9])
def test_splits_start_at_lines_and_read_back_as_the_whole_file(tmp_path: Path, split_bytes: int) -> None:
    a, b, _ = write_inputs(tmp_path, 2000)
    uris = [str(a), str(b)]
    prints = [fingerprint(u) for u in uris]
    splits = plan_splits(uris, None, split_bytes, prints)
    for uri in uris:
        data = Path(uri).read_bytes()
        mine = [s for s in splits if s.uri == uri]
        assert mine[0].start == 0 and mine[-1].end is None
        for s, nxt in zip(mine, mine[1:]):
            assert s.end == nxt.start and data[nxt.start - 1:nxt.start] == b"\n"
            assert nxt.first_line == data[:nxt.start].count(b"\n") + 1
        if split_bytes < len(data):
            assert len(mine) >= len(data) // split_bytes
    read = ReadSpec()
    got = [r for s in splits for r in read_split(s, read, 1_000_000)]
    assert got == list(iter_records(uris))
    assert [s.index for s in splits] == list(range(len(splits)))
    assert [s.part for s in splits] == sorted(s.part for s in splits)


def test_a_boundary_inside_a_long_line_moves_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_bytes(b"short\n" + b"x" * 50_000 + b"\nnext\nlast")
    expected = [(0, 1), (6, 2), (50_007, 3), (50_012, 4)]  # the second split is the long line alone
    assert line_boundaries(str(path), 3) == expected
    assert line_boundaries(str(path), 3, block=1000) == expected
    assert line_boundaries(str(path), 10) == [(0, 1), (50_007, 3)]  # line 2 starts before byte 10


def test_part_store_on_s3(s3_bucket: str, tmp_path: Path) -> None:
    store = PartStore(f"s3://{s3_bucket}/jobs/one/")
    store.write(MANIFEST, b"{}")
    scratch = tmp_path / "p"
    scratch.write_bytes(b"row\n")
    store.put_file("part-00000.jsonl", scratch)
    store.write("part-00000.done.json", b"{}")
    assert store.listing() == {MANIFEST: 2, "part-00000.jsonl": 4, "part-00000.done.json": 2}
    assert store.read("part-00001.jsonl") is None and store.read("part-00000.jsonl") == b"row\n"
    assert store.remove_all() == 3 and store.names() == set()


def test_parse_size() -> None:
    from llm_shield.checks import parse_size

    assert parse_size("8MB", "--split-size") == 8 << 20
    assert parse_size("512kb", "--split-size") == 512 << 10
    assert parse_size("65536", "--split-size") == 65536
    for bad in ("lots", "0", "1KB", "-5MB"):
        with pytest.raises(ConfigError):
            parse_size(bad, "--split-size")


# -- end to end: real redis-server, real workers --------------------------------------------------------------


def clear_cache(url: str) -> None:
    ResultCache(redis.Redis.from_url(url), CacheSettings()).clear()


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.integration
@pytest.mark.slow
def test_distributed_parts_merge_to_the_single_producer_output(redis_url: str, model_env: dict[str, str],
                                                               tmp_path: Path) -> None:
    inputs = [str(p) for p in write_inputs(tmp_path, 1500)]
    env = {**model_env, "SHIELD_REDIS_URL": redis_url}
    worker = WorkerProcess(redis_url, "fp32", env, log_dir=tmp_path).wait_ready()
    try:
        out = tmp_path / "parts"
        done = cli("scan", *inputs, "--distributed", "--split-size", "16KB", "--variant", "fp32", "-o", str(out),
                   "--batch-size", "64", env=env)
        assert done.returncode == 0, done.stderr
        manifest = json.loads((out / MANIFEST).read_text())
        parts = sorted(p.name for p in out.glob("part-*.jsonl"))
        assert len(parts) == len(manifest["splits"]) >= 5  # a.jsonl and b.txt split, c.csv whole
        assert all((out / p.replace(".jsonl", ".done.json")).exists() for p in parts)
        assert "0 done before this run" in done.stderr
        merged = tmp_path / "merged.jsonl"
        done = cli("merge", str(out), "-o", str(merged), env=env)
        assert done.returncode == 0, done.stderr
        clear_cache(redis_url)  # both scans start from an empty cache, so `cached` agrees too
        single = tmp_path / "single.jsonl"
        done = cli("scan", *inputs, "--variant", "fp32", "-o", str(single), "--batch-size", "64", "--no-progress",
                   env=env)
        assert done.returncode == 0, done.stderr
        # fresh scores: the same rows field for field; a score may differ in its last digit (fp32 results move
        # ~1e-7 with the texts a window is batched with, and the batches of a split are not those of one stream)
        got, want = rows(merged), rows(single)
        assert len(got) == len(want) == 1500 + 1500 // 3 + 2 + 40
        for g, w in zip(got, want):
            g_scores = {k: v.pop("score") for k, v in g["scanners"].items()}
            w_scores = {k: v.pop("score") for k, v in w["scanners"].items()}
            assert abs(g.pop("risk_score") - w.pop("risk_score")) <= 1e-5
            assert all(abs(g_scores[k] - w_scores[k]) <= 1e-5 for k in w_scores)
            assert g == w
        assert got[17]["error"] and not got[5]["valid"]
        # scores from the cache (the single scan just stored them): byte for byte what `scan` writes
        cached_parts, cached_single = tmp_path / "cached-parts", tmp_path / "cached-single.jsonl"
        for argv in ((*inputs, "--distributed", "--split-size", "16KB", "-o", str(cached_parts)),
                     (*inputs, "-o", str(cached_single), "--no-progress")):
            done = cli("scan", *argv, "--variant", "fp32", "--batch-size", "64", env=env)
            assert done.returncode == 0, done.stderr
        assert cli("merge", str(cached_parts), "-o", str(merged), "--overwrite", env=env).returncode == 0
        assert merged.read_bytes() == cached_single.read_bytes()
        # nothing to do on a resume of a finished job; a plain rerun is refused, the input untouched
        again = cli("scan", *inputs, "--distributed", "--split-size", "16KB", "--variant", "fp32", "-o", str(out),
                    "--batch-size", "64", "--resume", env=env)
        assert again.returncode == 0 and f"({len(parts)} done before this run)" in again.stderr
        refused = cli("scan", *inputs, "--distributed", "-o", str(out), env=env)
        assert refused.returncode == 2 and "--resume" in refused.stderr and len(refused.stderr.splitlines()) == 1
        changed = cli("scan", *inputs[:2], "--distributed", "--split-size", "16KB", "--variant", "fp32",
                      "-o", str(out), "--batch-size", "64", "--resume", env=env)
        assert changed.returncode == 2 and "other inputs or options" in changed.stderr
    finally:
        worker.stop()


def parts_done(folder: Path) -> int:
    return len(list(folder.glob("part-*.done.json")))


@pytest.mark.integration
@pytest.mark.slow
def test_killed_worker_and_killed_submitter_then_resume_gives_every_row_once(
        redis_url: str, model_env: dict[str, str], tmp_path: Path) -> None:
    a, _, _ = write_inputs(tmp_path, 6000, seed=5)
    env = {**model_env, "SHIELD_REDIS_URL": redis_url, "SHIELD_NO_WORKER_TIMEOUT": "120"}
    first = WorkerProcess(redis_url, "int8", env, log_dir=tmp_path).wait_ready()
    second: WorkerProcess | None = None
    out = tmp_path / "parts"
    argv = [sys.executable, "-m", "llm_shield.cli", "scan", str(a), "--distributed", "--split-size", "16KB",
            "-o", str(out), "--batch-size", "32"]
    try:
        submitter = subprocess.Popen(argv, env={**os.environ, **env}, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        said: list[str] = []
        threading.Thread(target=lambda: said.extend(submitter.stderr), daemon=True).start()  # type: ignore[arg-type]
        deadline = time.monotonic() + 120
        while parts_done(out) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(first.proc.pid, signal.SIGKILL)  # the whole (only) worker, busy with the next split
        total = len(json.loads((out / MANIFEST).read_text())["splits"])
        # the split the dead worker held is sent again once its node stops beating (not after the visibility
        # timeout), while no worker is up: the job waits for one
        while not any("stopped beating; sending the split again" in line for line in said):
            assert time.monotonic() < deadline + 60 and submitter.poll() is None, "".join(said)
            time.sleep(0.2)
        before = parts_done(out)
        # the job goes on with a second worker; the submitter dies as soon as that worker finishes a split, with
        # most splits still to do (a worker that started earlier could finish them all before it is killed)
        second = WorkerProcess(redis_url, "int8", env, log_dir=tmp_path).wait_ready()
        while parts_done(out) == before:
            assert time.monotonic() < deadline + 120 and submitter.poll() is None, "".join(said)
            time.sleep(0.02)
        submitter.kill()  # SIGKILL: no chance to tidy up
        submitter.wait()
        assert 3 <= parts_done(out) < total
        resumed = cli(*argv[3:], "--resume", env=env, timeout=600)
        assert resumed.returncode == 0, resumed.stderr
        merged = tmp_path / "merged.jsonl"
        assert cli("merge", str(out), "-o", str(merged), env=env).returncode == 0
        got = rows(merged)
        assert [r["id"] for r in got] == [f"{a}:{n}" for n in range(1, 6001)]
        assert got[17]["error"] and not got[5]["valid"] and not got[3000]["valid"]
        assert not list(out.glob(".shield-part-*"))  # no scratch file left behind by the finished splits
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.integration
def test_merge_refuses_an_unfinished_job(tmp_path: Path, model_env: dict[str, str]) -> None:
    a, _, _ = write_inputs(tmp_path, 300)
    store = PartStore(str(tmp_path / "parts"))
    from llm_shield.contract import ScanOptions
    from llm_shield.producer.splits import Manifest, dump

    prints = [fingerprint(str(a))]
    manifest = Manifest(inputs=prints, fmt=None, read=ReadSpec(), options=ScanOptions(), batch_size=64,
                        split_bytes=4096, splits=plan_splits([str(a)], None, 4096, prints))
    store.write(MANIFEST, dump(manifest))
    with pytest.raises(ScanIncompleteError, match="parts are not done"):
        merge_parts(store, io.BytesIO())
    done = cli("merge", str(tmp_path / "parts"), "-o", str(tmp_path / "m.jsonl"), env=model_env)
    assert done.returncode == 3 and "--resume" in done.stderr and not (tmp_path / "m.jsonl").exists()
    with pytest.raises(InputError):
        PartStore(str(a))  # a file is not an output folder


@pytest.mark.integration
@pytest.mark.slow
def test_s3_inputs_and_an_s3_output_prefix(redis_url: str, model_env: dict[str, str], s3_bucket: str,
                                           tmp_path: Path) -> None:
    """Inputs from S3 objects (one split each) and from a local file (byte ranges), parts and markers to an S3
    prefix, merged from there; the merge equals a single-producer scan of the same inputs (which then takes every
    score from the cache the distributed scan filled: equal to the last digit)."""
    import boto3

    a, _, c = write_inputs(tmp_path, 400)
    s3 = boto3.client("s3")
    s3.upload_file(str(c), s3_bucket, "in/c.csv")
    s3.put_object(Bucket=s3_bucket, Key="in/d.jsonl", Body=b'{"text": "fine"}\n{"text": "' + ATTACK.encode() + b'"}\n')
    env = {**model_env, "SHIELD_REDIS_URL": redis_url, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    worker = WorkerProcess(redis_url, "int8", env, log_dir=tmp_path).wait_ready()
    try:
        inputs = [str(a), f"s3://{s3_bucket}/in/"]
        prefix = f"s3://{s3_bucket}/results/run-1/"
        done = cli("scan", *inputs, "--distributed", "--split-size", "8KB", "-o", prefix, env=env)
        assert done.returncode == 0, done.stderr
        listed = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="results/run-1/")["Contents"]}
        parts = sorted(k for k in listed if k.endswith(".jsonl"))
        assert "results/run-1/_manifest.json" in listed and len(parts) >= 4
        assert all(p.replace(".jsonl", ".done.json") in listed for p in parts)
        merged, single = tmp_path / "merged.jsonl", tmp_path / "single.jsonl"
        assert cli("merge", prefix, "-o", str(merged), env=env).returncode == 0
        done = cli("scan", *inputs, "-o", str(single), "--no-progress", env=env)
        assert done.returncode == 0, done.stderr
        got = rows(merged)
        strip = lambda r: {k: v for k, v in r.items() if k != "cached"}  # noqa: E731 - the rescan's rows are cached
        assert [strip(r) for r in got] == [strip(r) for r in rows(single)]  # scores too: the rescan's come from the cache
        assert [r["source"]["uri"] for r in got[-2:]] == [f"s3://{s3_bucket}/in/d.jsonl"] * 2
        assert not got[-1]["valid"] and got[-2]["valid"]
    finally:
        worker.stop()
