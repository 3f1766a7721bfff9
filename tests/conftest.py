"""Shared fixtures: a real redis-server per test session, a clean key prefix per test, moto's S3 server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from llm_shield.local_redis import LocalRedis
    from llm_shield.settings import ShieldSettings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator["LocalRedis"]:
    """A real redis-server on a Unix socket for the whole test session. Fails (never skips) if none exists."""
    from llm_shield.local_redis import LocalRedis

    server = LocalRedis.start(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: "LocalRedis") -> Iterator[str]:
    """The session server's URL, with the database flushed after each test."""
    import redis

    yield redis_server.url
    redis.Redis.from_url(redis_server.url).flushdb()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a loopback port: a real HTTP S3 endpoint for boto3."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture()
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3's standard configuration at the moto server (and child processes too)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_endpoint


@pytest.fixture()
def s3_bucket(s3_env: str) -> str:
    """A fresh bucket on the moto server."""
    import boto3

    name = f"shield-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


MODEL_HOME = Path(os.environ.get("SHIELD_TEST_MODEL_HOME", REPO / ".test-models"))


def _build_fingerprint() -> str:
    import hashlib

    h = hashlib.sha256()
    sources = (sorted((REPO / "worker" / "modelbuild").glob("*.py")) + sorted((REPO / "data").glob("*/t*.jsonl"))
               + sorted((REPO / "worker" / "modelbuild" / "trained").glob("*.safetensors")))
    for path in sources:
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def model_settings() -> "ShieldSettings":
    """Settings whose catalog holds the default models, built once and reused while data and code are unchanged."""
    from filelock import FileLock

    from llm_shield.settings import ShieldSettings

    MODEL_HOME.mkdir(parents=True, exist_ok=True)
    settings = ShieldSettings(home=MODEL_HOME, catalog=str(MODEL_HOME / "catalog.json"))
    stamp = MODEL_HOME / "fingerprint"
    with FileLock(str(MODEL_HOME / ".build.lock")):
        fingerprint = _build_fingerprint()
        if not stamp.exists() or stamp.read_text() != fingerprint:
            from llm_shield.worker.modelbuild.build import build_models

            (MODEL_HOME / "catalog.json").unlink(missing_ok=True)
            build_models(settings)
            stamp.write_text(fingerprint)
    return settings


@pytest.fixture()
def model_env(model_settings: "ShieldSettings", monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for this process and its children to use the built models."""
    from llm_shield.settings import get_settings

    env = {"SHIELD_HOME": str(model_settings.home), "SHIELD_CATALOG": model_settings.catalog_location,
           "SHIELD_METRICS_PORT": "0"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()
