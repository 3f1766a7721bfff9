"""Faults on purpose: killed and stopped workers, a restarted Redis, a dead cache, a poison batch.

Real redis-server, real worker processes, real producer (the CLI). Every test checks the output holds
every input row exactly once, in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from llm_shield.local_redis import LocalRedis
from tests.conftest import free_port
from tests.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent


def make_input(path: Path, n: int) -> Path:
    path.write_text("".join(f"line {i}: user {i % 89} viewed invoice {i * 31} from the billing page\n"
                            for i in range(n)))
    return path


def start_scan(src: Path, out: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "llm_shield.cli", "scan", str(src), "-o", str(out), "--no-progress",
                             "--batch-size", "16", "--overwrite", *extra],
                            env={**os.environ, **env}, cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def assert_complete(out: Path, n: int) -> list[dict]:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["source"]["line"] for r in rows] == list(range(1, n + 1))  # every row once, in order
    return rows


def wait_for_rows(out: Path, rows: int, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and out.read_text().count("\n") >= rows:
            return
        if proc.poll() is not None:
            return
        time.sleep(0.05)


def test_worker_process_killed_mid_job(redis_url: str, model_env: dict[str, str], tmp_path: Path) -> None:
    n = 1200
    worker = WorkerProcess(redis_url, "int8", model_env, concurrency=2, log_dir=tmp_path).wait_ready(processes=2)
    try:
        src, out = make_input(tmp_path / "in.txt", n), tmp_path / "out.jsonl"
        proc = start_scan(src, out, {**model_env, "SHIELD_REDIS_URL": redis_url})
        wait_for_rows(out, 100, proc)
        killed = worker.children()
        for pid in killed:  # SIGKILL every pool process, in the middle of their batches
            os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        rows = assert_complete(out, n)
        assert all(r["error"] is None for r in rows)
        assert killed and "WorkerLostError" in worker.log() or "exited" in worker.log()
    finally:
        worker.stop()


def test_worker_sigterm_is_a_warm_shutdown_and_nothing_is_lost(redis_url: str, model_env: dict[str, str],
                                                               tmp_path: Path) -> None:
    n = 1200
    first = WorkerProcess(redis_url, "int8", model_env, log_dir=tmp_path).wait_ready()
    src, out = make_input(tmp_path / "in.txt", n), tmp_path / "out.jsonl"
    proc = start_scan(src, out, {**model_env, "SHIELD_REDIS_URL": redis_url})
    wait_for_rows(out, 100, proc)
    os.kill(first.proc.pid, signal.SIGTERM)  # what Kubernetes sends on scale-down
    first.proc.wait(120)
    assert "warm shutdown" in first.log().lower()
    second = WorkerProcess(redis_url, "int8", model_env, log_dir=tmp_path).wait_ready()
    try:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        rows = assert_complete(out, n)
        assert all(r["error"] is None for r in rows)
    finally:
        first.stop()
        second.stop()


def test_a_restart_between_commands_still_resends_outstanding_batches(tmp_path: Path) -> None:
    """redis-py reconnects silently when Redis restarted while the producer was busy elsewhere; a batch a
    worker held would then wait for the visibility timeout (an hour) unless the producer notices."""
    from llm_shield.producer.job import Chunk, ScanJob
    from llm_shield.contract import ScanBatch, ScanOptions, queue_for
    from llm_shield.settings import ShieldSettings

    server = LocalRedis.start(tmp_path / "redis", appendonly=True, port=free_port())
    try:
        options = ScanOptions()
        job = ScanJob(server.url, options, ShieldSettings())
        chunk = Chunk(0, records=[], sent=["hello"], sent_at=time.monotonic(),
                      batch=ScanBatch(job_id=job.job_id, batch_index=0, options=options, texts=["hello"]))
        outstanding = {0: chunk}
        job._check_restart(outstanding)
        queue = queue_for(options.variant)
        assert job.redis.llen(queue) == 0  # same server: nothing sent
        server.restart()
        job.redis.ping()  # the client reconnects without raising: the restart went unseen
        job._check_restart(outstanding)
        assert job.redis.llen(queue) == 1  # the outstanding batch is queued again
        job._check_restart(outstanding)
        assert job.redis.llen(queue) == 1  # once
    finally:
        server.stop()


def test_redis_restart_mid_job(model_env: dict[str, str], tmp_path: Path) -> None:
    n = 1500
    server = LocalRedis.start(tmp_path / "redis", appendonly=True, port=free_port())
    worker = WorkerProcess(server.url, "int8", model_env, log_dir=tmp_path).wait_ready()
    try:
        src, out = make_input(tmp_path / "in.txt", n), tmp_path / "out.jsonl"
        env = {**model_env, "SHIELD_REDIS_URL": server.url}
        proc = start_scan(src, out, env)
        wait_for_rows(out, 150, proc)
        server.restart()  # SIGTERM: Redis writes its append-only file and comes back with the same data
        stdout, stderr = proc.communicate(timeout=400)
        if proc.returncode != 0:  # allowed: a clear message, then --resume completes the job
            assert stderr.startswith("error: lost the broker") and "--resume" in stderr, stderr
            proc = start_scan(src, out, env, "--resume")
            proc.args.remove("--overwrite")
            stdout, stderr = proc.communicate(timeout=400)
        assert proc.returncode == 0, stderr
        rows = assert_complete(out, n)
        assert all(r["error"] is None for r in rows)
    finally:
        worker.stop()
        server.stop()


def test_unreachable_cache_scans_uncached_and_says_so(redis_url: str, model_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    worker = WorkerProcess(redis_url, "int8", model_env, log_dir=tmp_path,
                           extra_env={"SHIELD_CACHE_URL": dead}).wait_ready()
    try:
        src, out = make_input(tmp_path / "in.txt", 100), tmp_path / "out.jsonl"
        proc = start_scan(src, out, {**model_env, "SHIELD_REDIS_URL": redis_url, "SHIELD_CACHE_URL": dead})
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        rows = assert_complete(out, 100)
        assert all(r["error"] is None and not r["cached"] for r in rows)
        assert "cache: unreachable" in stderr
    finally:
        worker.stop()


def test_poison_batch_is_given_up_after_bounded_deliveries(redis_url: str, model_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    """Batch 2 kills its worker process every time it is delivered (we SIGKILL the process that took it)."""
    n, poison = 64, 2
    worker = WorkerProcess(redis_url, "int8", model_env, log_dir=tmp_path).wait_ready()
    client = redis.Redis.from_url(redis_url)
    stop = threading.Event()

    def assassin() -> None:
        seen = 0
        while not stop.is_set():
            for key in client.scan_iter(match=f"shield:job:*:deliveries:{poison}"):
                count = int(client.get(key) or 0)
                if count > seen and count <= 3:
                    seen = count
                    for pid in worker.children():
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    killer = threading.Thread(target=assassin, daemon=True)
    killer.start()
    try:
        src, out = make_input(tmp_path / "in.txt", n), tmp_path / "out.jsonl"
        proc = start_scan(src, out, {**model_env, "SHIELD_REDIS_URL": redis_url})
        stdout, stderr = proc.communicate(timeout=400)
        assert proc.returncode == 3, stderr  # finished, but rows could not be scanned (README "Exit statuses")
        assert "error: 16 row(s) could not be scanned" in stderr
        rows = assert_complete(out, n)
        bad = [r for r in rows if r["error"]]
        assert [r["source"]["line"] for r in bad] == list(range(poison * 16 + 1, poison * 16 + 17))
        assert "delivered 3 times" in bad[0]["error"]
        assert all(r["error"] is None for r in rows if r not in bad)
    finally:
        stop.set()
        worker.stop()


def test_password_protected_redis_and_no_secret_in_logs(model_env: dict[str, str], tmp_path: Path) -> None:
    secret = "s3cr3t-P4ss-0987"
    aws_secret = "AKIAFAKEFAKEFAKE/sekrit-aws-value-123"
    server = LocalRedis.start(tmp_path / "redis", password=secret, port=free_port())
    env = {**model_env, "SHIELD_REDIS_URL": server.url, "AWS_SECRET_ACCESS_KEY": aws_secret}
    worker = WorkerProcess(server.url, "int8", env, log_dir=tmp_path).wait_ready()
    try:
        src, out = make_input(tmp_path / "in.txt", 50), tmp_path / "out.jsonl"
        proc = start_scan(src, out, env)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        assert_complete(out, 50)
        wrong = server.url.replace(secret, "wrong")
        bad = start_scan(src, tmp_path / "o2.jsonl", {**model_env, "SHIELD_REDIS_URL": wrong})
        _, bad_err = bad.communicate(timeout=120)
        assert bad.returncode != 0 and bad_err.startswith("error: cannot reach the broker")
        assert ":***@" in bad_err and "wrong" not in bad_err  # the URL is shown with its password masked
        for text in (stdout, stderr, worker.log(), bad_err):
            assert secret not in text and aws_secret not in text
    finally:
        worker.stop()
        server.stop()


def test_killed_embedded_producer_leaves_nothing_running(model_env: dict[str, str], tmp_path: Path) -> None:
    def running() -> set[int]:
        found = subprocess.run(["pgrep", "-f", "redis-server|worker.app worker"], capture_output=True, text=True)
        return {int(p) for p in found.stdout.split()}

    src, out = make_input(tmp_path / "in.txt", 5000), tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "SHIELD_REDIS_URL"}
    before = running()
    proc = subprocess.Popen([sys.executable, "-m", "llm_shield.cli", "scan", str(src), "-o", str(out), "--no-progress"],
                            env={**env, **model_env}, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_rows(out, 64, proc, timeout=240)
    started = running() - before
    assert started, "the embedded redis-server and worker should be running"
    proc.kill()  # SIGKILL: no chance to clean up; the children must notice on their own
    proc.wait(30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and running() & started:
        time.sleep(0.5)
    assert not running() & started
