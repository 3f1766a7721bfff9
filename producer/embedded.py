"""The embedded default: a private redis-server and local worker processes for one job, then nothing left.

The workers are the same code as on a cluster (`celery -A llm_shield.worker.app worker`), started as a child process.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from llm_shield.config import Variant
from llm_shield.contract import queue_for
from llm_shield.liveness import live_members
from llm_shield.errors import ShieldError
from llm_shield.local_redis import LocalRedis, die_with_parent, stop_group
from llm_shield.node import worker_processes
from llm_shield.settings import ShieldSettings

log = logging.getLogger("shield.embedded")

READY_TIMEOUT = 300.0
CELERY_PREFIX = re.compile(r"^\[[^\]]*\]\s*")
STOP_TIMEOUT = 60.0


class EmbeddedCluster:
    """Context manager: `with EmbeddedCluster(settings, Variant.int8) as url: ...` runs a job on `url`."""

    def __init__(self, settings: ShieldSettings, variant: Variant, processes: int | None = None) -> None:
        self.settings = settings
        self.variant = variant
        self.processes = processes or worker_processes(settings, [variant])
        self.redis: LocalRedis | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="shield-embedded-"))

    def __enter__(self) -> str:
        try:
            self.redis = LocalRedis.start(self.workdir / "redis")
            self.worker = self._start_worker(self.redis.url)
            self._wait_ready(self.redis.url)
        except BaseException:
            self.close()
            raise
        return self.redis.url

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_worker(self, url: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update({
            "SHIELD_REDIS_URL": url,
            "SHIELD_METRICS_PORT": "0",
            "SHIELD_WORKER_CONCURRENCY": str(self.processes),
            "SHIELD_HOME": str(self.settings.home),
            "SHIELD_CATALOG": self.settings.catalog_location,
        })
        log_path = self.workdir / "worker.log"
        self._log = open(log_path, "wb")
        cmd = [sys.executable, "-m", "celery", "-A", "llm_shield.worker.app", "worker", "-Q", queue_for(self.variant),
               "-c", str(self.processes), "--pool", "prefork", "-n", f"embedded-{os.getpid()}@%h",
               "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
        return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent)

    def _wait_ready(self, url: str) -> None:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.worker is not None and self.worker.poll() is not None:
                # a pool process that cannot load its models stops the worker with SIGTERM: a clean exit, code 0
                code = f" (code {self.worker.returncode})" if self.worker.returncode else ""
                raise ShieldError(f"the local worker stopped at start{code}: {self._log_tail()}")
            if len(live_members(client, self.variant)) >= 1:
                return
            time.sleep(0.1)
        raise ShieldError(f"the local worker did not get ready in {READY_TIMEOUT:.0f} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        path = self.workdir / "worker.log"
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        useful = [l for l in lines if "Error" in l or "error" in l] or lines
        # without Celery's "[time: LEVEL/process]" prefix and our own "error: ", the reason is the message
        return CELERY_PREFIX.sub("", useful[-1]).removeprefix("error: ") if useful else "no output"

    def close(self) -> None:
        """Warm-shut the workers (SIGTERM), kill what remains, stop Redis, remove the folder."""
        if self.worker is not None:
            stop_group(self.worker, STOP_TIMEOUT)
            self._log.close()
        self.worker = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        import shutil

        shutil.rmtree(self.workdir, ignore_errors=True)
