"""Starting real Celery worker processes for integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

from llm_shield.contract import queue_for
from llm_shield.liveness import live_members
from llm_shield.local_redis import stop_group

REPO = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """`celery -A llm_shield.worker.app worker` for one variant queue, as a child process group."""

    def __init__(self, broker_url: str, variant: str, env: dict[str, str], concurrency: int = 1,
                 log_dir: Path | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.variant = variant
        self.name = f"test-{variant}-{uuid.uuid4().hex[:6]}@%h"
        self.log_path = (log_dir or Path("/tmp")) / f"worker-{uuid.uuid4().hex[:8]}.log"
        full_env = {**os.environ, **env, **(extra_env or {}), "SHIELD_REDIS_URL": broker_url,
                    "SHIELD_WORKER_CONCURRENCY": str(concurrency)}
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "llm_shield.worker.app", "worker", "-Q", queue_for(variant), "-c",
             str(concurrency), "--pool", "prefork", "-n", self.name, "--without-gossip", "--without-mingle",
             "-l", "INFO"],
            env=full_env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.broker_url = broker_url

    def wait_ready(self, processes: int = 1, timeout: float = 180.0) -> "WorkerProcess":
        client = redis.Redis.from_url(self.broker_url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log()[-3000:]}")
            if len(live_members(client, self.variant)) >= processes:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready: {self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self, timeout: float = 30.0) -> None:
        stop_group(self.proc, timeout)
        self._log.close()
