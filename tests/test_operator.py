"""The operator's contract: exit statuses, one-line errors, no silent waits, flat memory, no lost input.

CLI runs are real subprocesses; integration tests use a real redis-server and real worker processes.
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

from llm_shield.config import Variant
from llm_shield.contract import (
    CACHE_SCHEMA_VERSION,
    ScanBatch,
    ScanOptions,
    TextResult,
    cancelled_key,
    claims_key,
    live_workers_key,
)
from tests.workers import WorkerProcess

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_shield.cli", *args], env={**os.environ, **(env or {})},
                          cwd=cwd or REPO, text=True, capture_output=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def make_jsonl(path: Path, n: int, prefix: str = "row") -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": f"{prefix} {i}: please summarise invoice {i * 7}"}) + "\n"
                            for i in range(n)))
    return path


# ----------------------------------------------------------------------------- usage errors: exit 2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    make_jsonl(folder / "in.jsonl", 5)
    (folder / "in.csv").write_text("id,prompt\n1,hello\n")
    return folder


USAGE_CASES = {
    "scan without arguments": (["scan"], {}, "Missing argument"),
    "unknown variant": (["scan", "{in}/in.jsonl", "-o", "{out}", "--variant", "foo"], {}, "'--variant'"),
    "batch size not a number": (["scan", "{in}/in.jsonl", "-o", "{out}", "--batch-size", "abc"], {}, "--batch-size"),
    "negative batch size": (["scan", "{in}/in.jsonl", "-o", "{out}", "--batch-size", "-1"], {}, "--batch-size"),
    "unknown command": (["bogus"], {}, "No such command 'bogus'"),
    "bad setting": (["scan", "{in}/in.jsonl", "-o", "{out}"], {"SHIELD_BATCH_SIZE": "abc"}, "SHIELD_BATCH_SIZE"),
    "ml percent out of range": (["scan", "{in}/in.jsonl", "-o", "{out}", "--ml-percent", "150"], {}, "--ml-percent"),
    "malformed broker": (["scan", "{in}/in.jsonl", "-o", "{out}", "--broker", "redis://:hunter2@host:port/0"], {},
                         "malformed URL"),
    "broker scheme": (["scan", "{in}/in.jsonl", "-o", "{out}", "--broker", "http://localhost:6379"], {}, "scheme"),
    "output is a folder": (["scan", "{in}/in.jsonl", "-o", "{in}"], {}, "is a directory"),
    "output is the input": (["scan", "{in}/in.jsonl", "-o", "{in}/in.jsonl", "--overwrite"], {}, "is also an input"),
    "unknown threshold name": (["scan", "{in}/in.jsonl", "-o", "{out}", "--threshold", "bogus=0.5"], {},
                               "unknown scanner 'bogus'"),
    "threshold out of range": (["scan", "{in}/in.jsonl", "-o", "{out}", "--threshold", "prompt_injection=2"], {},
                               "between 0 and 1"),
    "threshold not a number": (["scan", "{in}/in.jsonl", "-o", "{out}", "--threshold", "toxicity=high"], {},
                               "not a number"),
    "unknown scanner": (["scan", "{in}/in.jsonl", "-o", "{out}", "-s", "bogus"], {}, "unknown scanner(s) 'bogus'"),
    "missing CSV column": (["scan", "{in}/in.csv", "-o", "{out}", "--text-field", "nope"], {},
                           "column 'nope' is not in the CSV header"),
    "missing CSV default column": (["scan", "{in}/in.csv", "-o", "{out}"], {}, "column 'text' is not in the CSV"),
    "eval unknown scanner": (["eval", "{in}/in.jsonl", "-s", "bogus"], {}, "unknown scanner"),
}


@pytest.mark.parametrize("case", sorted(USAGE_CASES))
def test_usage_and_configuration_errors_are_one_line_and_exit_2(case: str, inputs: Path, tmp_path: Path) -> None:
    args, env, expected = USAGE_CASES[case]
    out = tmp_path / "out.jsonl"
    argv = [a.format(**{"in": inputs, "out": out}) for a in args]
    before = (inputs / "in.jsonl").read_bytes()
    result = cli(*argv, env={"SHIELD_HOME": str(tmp_path / "home"), **env})
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert expected in one_line_error(result)
    assert (inputs / "in.jsonl").read_bytes() == before  # the input is never touched
    assert not out.exists()  # refused before any work started
    assert "hunter2" not in result.stderr


def test_no_arguments_prints_help_and_exits_2() -> None:
    result = cli()
    assert result.returncode == 2
    assert "Usage" in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_debug_shows_the_traceback(inputs: Path, tmp_path: Path) -> None:
    result = cli("--debug", "scan", str(inputs / "in.jsonl"), "-o", str(tmp_path / "o.jsonl"), "-s", "bogus")
    assert result.returncode != 0 and "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_missing_build_extra_is_named(tmp_path: Path) -> None:
    blocked = "import sys; sys.modules['onnx'] = None; from llm_shield.cli import main; main(sys.argv[1:])"
    build = subprocess.run([sys.executable, "-c", blocked, "models", "build"], text=True, capture_output=True,
                           env={**os.environ, "SHIELD_HOME": str(tmp_path)}, cwd=tmp_path)
    assert build.returncode == 2
    assert "needs the `build` extra" in one_line_error(build)
    assert "pip install 'llm-shield-workers[build]'" in build.stderr


def test_flower_without_the_extra_says_so(tmp_path: Path) -> None:
    code = ("import sys, importlib.util; real = importlib.util.find_spec; "
            "importlib.util.find_spec = lambda name, *a: None if name == 'flower' else real(name, *a); "
            "from llm_shield.cli import main; main(sys.argv[1:])")
    result = subprocess.run([sys.executable, "-c", code, "flower", "--broker", "redis://127.0.0.1:1/0"],
                            env={**os.environ, "SHIELD_FLOWER_BASIC_AUTH": "a:b"}, text=True, capture_output=True)
    assert result.returncode == 2
    assert "needs the `flower` extra" in one_line_error(result)


# ----------------------------------------------------------------------------- Python API: same errors


def test_python_api_raises_the_projects_errors(model_env: dict[str, str]) -> None:
    from llm_shield.errors import ConfigError
    from llm_shield.producer import Scanner

    with pytest.raises(ConfigError, match="unknown scanner"):
        Scanner(scanners=["bogus"])
    with pytest.raises(ConfigError, match="between 0 and 1"):
        Scanner(thresholds={"prompt_injection": 7})
    with pytest.raises(ConfigError, match="unknown scanner 'nope'"):
        Scanner(thresholds={"nope": 0.5})
    with pytest.raises(ConfigError, match="malformed URL"):
        Scanner(broker="redis://host:notaport/0")
    with pytest.raises(ConfigError, match="ml_rollout_percent"):
        Scanner(ml_rollout_percent=150)
    with pytest.raises(ConfigError, match="batch_size -1"):
        Scanner(batch_size=-1)
    with pytest.raises(ConfigError, match="'foo' is not a valid Variant"):
        Scanner(variant="foo")


@pytest.mark.integration
def test_python_api_missing_id_is_an_error_row(redis_url: str, model_env: dict[str, str], tmp_path: Path) -> None:
    from llm_shield.producer import Scanner

    worker = WorkerProcess(redis_url, "int8", model_env, log_dir=tmp_path).wait_ready()
    try:
        with Scanner(broker=redis_url) as scanner:
            rows = list(scanner.scan_records([{"id": "a", "text": "hello"}, {"text": "no id here"}], id_field="id"))
    finally:
        worker.stop()
    assert rows[0].id == "a" and rows[0].error is None
    assert rows[1].error == "id row 'id' is missing" and rows[1].id == "<api>:1"


# ----------------------------------------------------------------------------- interrupts: exit 130


def start_scan(src: Path, out: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "llm_shield.cli", "scan", str(src), "-o", str(out),
                             "--no-progress", "--batch-size", "16", *extra],
                            env={**os.environ, **env}, cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_for_rows(out: Path, rows: int, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= rows:
            return
        time.sleep(0.05)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_writes_finished_rows_cancels_and_exits_130(sig: signal.Signals, redis_url: str,
                                                              model_env: dict[str, str], tmp_path: Path) -> None:
    n = 10000  # long enough that the interrupt lands mid-job
    worker = WorkerProcess(redis_url, "int8", model_env, log_dir=tmp_path).wait_ready()
    try:
        src, out = make_jsonl(tmp_path / "in.jsonl", n), tmp_path / "out.jsonl"
        env = {**model_env, "SHIELD_REDIS_URL": redis_url}
        proc = start_scan(src, out, env)
        wait_for_rows(out, 64, proc)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr
        assert "interrupted after" in stderr and "--resume" in stderr
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert 0 < len(rows) < n
        assert [r["source"]["line"] for r in rows] == list(range(1, len(rows) + 1))  # every finished row, in order
        client = redis.Redis.from_url(redis_url)
        assert any(client.exists(k) for k in client.scan_iter(cancelled_key("*")))  # sent batches are cancelled

        resumed = start_scan(src, out, env, "--resume")
        _, stderr = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, stderr
        lines = [json.loads(line)["source"]["line"] for line in out.read_text().splitlines()]
        assert lines == list(range(1, n + 1))
    finally:
        worker.stop()


# ----------------------------------------------------------------------------- no silent waits: exit 3


@pytest.mark.integration
def test_no_live_worker_is_said_within_seconds_and_stops(redis_url: str, model_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    from llm_shield import liveness

    liveness.beat(client, Variant.int8, "gone-host:1")  # a worker that was alive an hour ago...
    client.zadd(live_workers_key(Variant.int8), {"gone-host:1": 1.0})  # ...and never beat since
    src, out = make_jsonl(tmp_path / "in.jsonl", 50), tmp_path / "out.jsonl"
    started = time.monotonic()
    proc = start_scan(src, out, {**model_env, "SHIELD_REDIS_URL": redis_url, "SHIELD_NO_WORKER_TIMEOUT": "12"})
    _, stderr = proc.communicate(timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 3, stderr
    assert "no live worker consumes queue shield.cpu.int8" in stderr  # said while waiting
    assert "waiting for workers on queue shield.cpu.int8" in stderr  # the progress line says why
    assert "error: no live worker consumed queue shield.cpu.int8" in stderr and "--resume" in stderr
    assert took < 60, took


def wait_until_mid_batch(client: redis.Redis, node_pid: int, out: Path, batch_size: int,
                         proc: subprocess.Popen[str], timeout: float = 120) -> bool:
    """True once the worker node `node_pid` holds a batch whose rows are not written yet, twice 0.1 s apart."""
    def outstanding() -> set[int]:
        written = out.read_text().count("\n") if out.exists() else 0
        claimed = {int(i) for key in client.scan_iter(claims_key("*"))
                   for i, node in client.hgetall(key).items() if node.decode().endswith(f":{node_pid}")}
        return {i for i in claimed if i * batch_size >= written}

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        before = outstanding()
        time.sleep(0.1)
        if before & outstanding():
            return True
    return False


@pytest.mark.integration
@pytest.mark.slow
def test_whole_worker_killed_its_batch_is_sent_again_within_a_minute(redis_url: str, model_env: dict[str, str],
                                                                     tmp_path: Path) -> None:
    n = 20000  # long enough that the kill lands mid-job on a fast machine
    first = WorkerProcess(redis_url, "int8", model_env, log_dir=tmp_path).wait_ready()
    second = None
    try:
        src, out = make_jsonl(tmp_path / "in.jsonl", n), tmp_path / "out.jsonl"
        proc = start_scan(src, out, {**model_env, "SHIELD_REDIS_URL": redis_url}, "--batch-size", "1000")
        wait_for_rows(out, 1000, proc)
        # Kill while the worker holds a batch, not in the moment between answering one and taking the next
        # (then nothing would need sending again and the test would prove nothing).
        assert wait_until_mid_batch(redis.Redis.from_url(redis_url), first.proc.pid, out, 1000, proc), "the scan ended too soon"
        os.killpg(first.proc.pid, signal.SIGKILL)  # parent and pool: its batch stays unacknowledged in Redis
        first.proc.wait()
        second = WorkerProcess(redis_url, "int8", model_env, log_dir=tmp_path)
        killed_at = time.monotonic()
        _, stderr = proc.communicate(timeout=400)
        assert proc.returncode == 0, stderr
        assert time.monotonic() - killed_at < 300  # not the 3,600 s visibility timeout
        assert "stopped beating; sending the batch again" in stderr
        lines = [json.loads(line)["source"]["line"] for line in out.read_text().splitlines()]
        assert lines == list(range(1, n + 1))
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_a_job_without_progress_stops(redis_url: str, model_env: dict[str, str], tmp_path: Path) -> None:
    worker = WorkerProcess(redis_url, "int8", model_env, log_dir=tmp_path).wait_ready()
    try:
        src = tmp_path / "in.jsonl"
        long = "lorem ipsum dolor sit amet, consectetur adipiscing elit " * 600
        src.write_text("".join(json.dumps({"text": f"{i} {long}"}) + "\n" for i in range(64)))
        out = tmp_path / "out.jsonl"
        proc = start_scan(src, out, {**model_env, "SHIELD_REDIS_URL": redis_url, "SHIELD_STALL_TIMEOUT": "1"},
                          "--batch-size", "64")
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 3, stderr
        assert "no batch was answered for" in stderr and "SHIELD_STALL_TIMEOUT" in stderr
    finally:
        worker.stop()


# ----------------------------------------------------------------------------- flat memory


@pytest.mark.integration
def test_reading_pauses_behind_a_stuck_batch(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_shield.producer.job import MAX_PENDING_FACTOR, ScanJob
    from llm_shield.producer.readers import InputRecord
    from llm_shield.settings import ShieldSettings

    settings = ShieldSettings(max_inflight_batches=4, batch_size=8)

    class OneStuckBatch(ScanJob):
        def _prepare(self, chunk):  # type: ignore[no-untyped-def]
            if chunk.index == 0:  # sent, and never answered
                chunk.sent = ["stuck"]
                chunk.batch = ScanBatch(job_id=self.job_id, batch_index=0, options=self.options, texts=["stuck"])
                chunk.sent_at = time.monotonic()
            else:  # everything after it is answered at once (from the cache, say)
                for pos in range(len(chunk.records)):
                    chunk.results[pos] = TextResult()

    from llm_shield import liveness

    monkeypatch.setattr(liveness, "live_members", lambda *args, **kwargs: {"busy-host:1"})
    job = OneStuckBatch(redis_url, ScanOptions(), settings)
    read = 0

    def records():  # type: ignore[no-untyped-def]
        nonlocal read
        for i in range(200_000):
            read += 1
            yield InputRecord(id=str(i), source={"row": i}, text=f"text {i}")

    written = []
    thread = threading.Thread(target=lambda: written.extend(job.results(records())), daemon=True)
    thread.start()
    time.sleep(3)
    bound = (MAX_PENDING_FACTOR * settings.max_inflight_batches + 1) * settings.batch_size
    assert read <= bound, read  # reading paused: nothing grows while the batch is stuck
    assert written == []
    outcome = {"job_id": job.job_id, "batch_index": 0, "results": [TextResult().model_dump()]}
    redis.Redis.from_url(redis_url).rpush(f"shield:job:{job.job_id}:results", json.dumps(outcome))
    thread.join(timeout=120)
    assert not thread.is_alive() and len(written) == 200_000


# ----------------------------------------------------------------------------- corrupted cache entries


@pytest.fixture()
def worker(redis_url: str, model_env: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    """One real int8 worker on the test's Redis, stopped afterwards."""
    process = WorkerProcess(redis_url, "int8", model_env, log_dir=tmp_path).wait_ready()
    yield process
    process.stop()


@pytest.mark.integration
def test_a_corrupted_cache_entry_is_a_miss(worker: WorkerProcess, redis_url: str, model_env: dict[str, str],
                                         tmp_path: Path) -> None:
    src, out = make_jsonl(tmp_path / "in.jsonl", 40), tmp_path / "out.jsonl"
    env = {**model_env, "SHIELD_REDIS_URL": redis_url}
    first = cli("scan", str(src), "-o", str(out), "--no-progress", env=env)
    assert first.returncode == 0, first.stderr
    client = redis.Redis.from_url(redis_url)
    values = f"shield:{{cache}}:v{CACHE_SCHEMA_VERSION}:values"
    keys = client.hkeys(values)
    assert len(keys) == 40
    client.hset(values, keys[0], b"\x00not json at all")
    client.hset(values, keys[1], b'{"label": 3}')
    again = cli("scan", str(src), "-o", str(out), "--no-progress", "--overwrite", env=env)
    assert again.returncode == 0, again.stderr
    assert "2 unreadable entries were treated as misses and removed" in again.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 40 and all(r["error"] is None for r in rows)
    stats = json.loads(cli("cache", "stats", "--json", "--broker", redis_url, env=env).stdout)
    assert stats["corrupt"] == 2

    # a worker meeting one (a producer without the cache's knowledge of the model) scans the text again
    client.hset(values, keys[2], b"garbage")
    from tests.test_flower import send

    texts = [json.loads(line)["text"] for line in src.read_text().splitlines()]
    _, outcome = send(redis_url, texts, "int8")
    assert all(r.error is None for r in outcome.results)
    assert "unreadable cache entry" in worker.log()


@pytest.mark.integration
def test_cache_stats_count_each_lookup_once(worker: WorkerProcess, redis_url: str, model_env: dict[str, str],
                                           tmp_path: Path) -> None:
    src, out = make_jsonl(tmp_path / "in.jsonl", 50), tmp_path / "out.jsonl"
    env = {**model_env, "SHIELD_REDIS_URL": redis_url}
    for _ in range(2):
        result = cli("scan", str(src), "-o", str(out), "--no-progress", "--overwrite", env=env)
        assert result.returncode == 0, result.stderr
    stats = json.loads(cli("cache", "stats", "--json", "--broker", redis_url, env=env).stdout)
    assert (stats["hits"], stats["misses"]) == (50, 50)  # the rescan was all hits, each text counted once
    assert stats["hit_rate"] == 0.5


# ----------------------------------------------------------------------------- workers without models


@pytest.mark.integration
def test_a_worker_that_cannot_serve_its_models_is_not_ready(redis_url: str, model_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    env = {**model_env, "SHIELD_CATALOG": str(tmp_path / "missing-catalog.json")}
    worker = WorkerProcess(redis_url, "int8", env, log_dir=tmp_path)
    try:
        assert worker.proc.wait(timeout=120) != 0
        assert "error: cannot serve the models: no catalog at" in worker.log()
        assert not redis.Redis.from_url(redis_url).zcard(live_workers_key(Variant.int8))
    finally:
        worker.stop()

    # a model whose sha256 differs from the catalog's: the same
    catalog = json.loads(Path(model_env["SHIELD_CATALOG"]).read_text())
    for entry in catalog["models"]:
        entry["sha256"] = "0" * 64
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    env = {**model_env, "SHIELD_HOME": str(tmp_path / "home"), "SHIELD_CATALOG": str(tmp_path / "catalog.json"),
           "SHIELD_FILE_ROOTS": model_env["SHIELD_HOME"]}
    worker = WorkerProcess(redis_url, "int8", env, log_dir=tmp_path)
    try:
        assert worker.proc.wait(timeout=120) != 0
        assert "error: cannot serve the models:" in worker.log()
    finally:
        worker.stop()


@pytest.mark.integration
def test_embedded_scan_says_why_its_worker_stopped(model_env: dict[str, str], tmp_path: Path) -> None:
    """A model whose files verify but whose tokenizer cannot load: the pool process stops the local worker, and the
    scan says why in one line (not "exited with code 0")."""
    import hashlib
    import shutil

    catalog = json.loads(Path(model_env["SHIELD_CATALOG"]).read_text())
    entry = next(e for e in catalog["models"] if e["task"] == "prompt_injection" and e["variant"] == "int8")
    broken = tmp_path / "broken-int8"
    shutil.copytree(Path(entry["source"].removeprefix("file://")), broken)
    (broken / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    for f in entry["files"]:
        if f["name"] == "tokenizer.json":
            data = (broken / "tokenizer.json").read_bytes()
            f["sha256"], f["size"] = hashlib.sha256(data).hexdigest(), len(data)
    entry["source"] = f"file://{broken}/"
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    env = {"SHIELD_HOME": str(tmp_path / "home"), "SHIELD_CATALOG": str(tmp_path / "catalog.json"),
           "SHIELD_FILE_ROOTS": os.pathsep.join((model_env["SHIELD_HOME"], str(tmp_path)))}
    src, out = make_jsonl(tmp_path / "in.jsonl", 3), tmp_path / "out.jsonl"
    result = cli("scan", str(src), "-o", str(out), "--no-progress", env=env)
    assert result.returncode == 2, result.stderr
    line = one_line_error(result)
    assert line.startswith("error: the local worker stopped at start: cannot load prompt_injection/int8: "), line
    assert "code 0" not in line and "ForkPoolWorker" not in line


def test_a_pool_process_stops_the_worker_on_any_load_error(redis_url: str, model_env: dict[str, str],
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Not only the project's own errors: anything raised while loading a model stops the whole worker (SIGTERM to
    the parent, exit 3) with the reason, instead of leaving a pool process that never gets ready."""
    import llm_shield.worker.app as worker_app
    from llm_shield.settings import get_settings
    from llm_shield.worker.scan import BatchScanner

    def broken_engine(self: BatchScanner, scanner: str, variant: str) -> None:
        raise RuntimeError("boom")

    def exit_now(code: int) -> None:
        raise SystemExit(code)

    signals: list[int] = []
    for name in ("_scanner", "_member"):  # set by _load_models: restored after the test
        monkeypatch.setattr(worker_app, name, getattr(worker_app, name))
    monkeypatch.setattr(worker_app, "settings", get_settings())
    monkeypatch.setattr(worker_app.app, "shield_redis_url", redis_url, raising=False)
    monkeypatch.setattr(worker_app, "_variants", lambda: [Variant.int8])
    monkeypatch.setattr(BatchScanner, "engine", broken_engine)
    monkeypatch.setattr(worker_app.os, "kill", lambda pid, sig: signals.append(sig))
    monkeypatch.setattr(worker_app.os, "_exit", exit_now)
    with pytest.raises(SystemExit) as stopped:
        worker_app._load_models()
    assert stopped.value.code == 3 and signals == [signal.SIGTERM]
    assert "cannot load prompt_injection/int8: unexpected RuntimeError: boom; the worker stops" in capsys.readouterr().err


@pytest.mark.integration
def test_explicit_fallback_is_counted_in_the_summary(redis_url: str, model_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    env = {**model_env, "SHIELD_CATALOG": str(tmp_path / "missing-catalog.json"), "SHIELD_ALLOW_MISSING_MODELS": "1"}
    worker = WorkerProcess(redis_url, "int8", env, log_dir=tmp_path).wait_ready()
    try:
        src, out = make_jsonl(tmp_path / "in.jsonl", 20), tmp_path / "out.jsonl"
        result = cli("scan", str(src), "-o", str(out), "--no-progress", env={**env, "SHIELD_REDIS_URL": redis_url})
        assert result.returncode == 0, result.stderr
        assert "fallback: 20 rows were decided by heuristics because a model was unavailable" in result.stderr
    finally:
        worker.stop()


# ----------------------------------------------------------------------------- rows that could not be scanned


@pytest.mark.integration
def test_rows_that_could_not_be_scanned_exit_3(redis_url: str, model_env: dict[str, str], tmp_path: Path) -> None:
    env = {**model_env, "SHIELD_CATALOG": str(tmp_path / "missing-catalog.json"), "SHIELD_ALLOW_MISSING_MODELS": "1"}
    worker = WorkerProcess(redis_url, "int8", env, log_dir=tmp_path).wait_ready()
    try:
        src, out = make_jsonl(tmp_path / "in.jsonl", 10), tmp_path / "out.jsonl"
        result = cli("scan", str(src), "-o", str(out), "--no-progress", "--no-fallback",
                     env={**env, "SHIELD_REDIS_URL": redis_url})
        assert result.returncode == 3, result.stderr
        assert "10 not scanned" in result.stderr
        assert "error: 10 row(s) could not be scanned" in result.stderr
        assert len(out.read_text().splitlines()) == 10  # still one row out per row in
    finally:
        worker.stop()


# ----------------------------------------------------------------------------- names that cannot clash


@pytest.mark.integration
def test_a_users_worker_or_producer_module_changes_nothing(model_env: dict[str, str], tmp_path: Path) -> None:
    for name in ("worker", "producer", "shield"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('the user\\'s own module was imported')\n")
    make_jsonl(tmp_path / "in.jsonl", 5)
    result = cli("scan", "in.jsonl", "-o", "out.jsonl", "--no-progress", env=model_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 5
    api = subprocess.run([sys.executable, "-c", "from llm_shield.producer import Scanner; print(Scanner.__module__)"],
                         cwd=tmp_path, text=True, capture_output=True)
    assert api.returncode == 0 and api.stdout.strip() == "llm_shield.producer.api", api.stderr
