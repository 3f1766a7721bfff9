"""The Helm chart, rendered offline by Helm itself (helm-python-sdk) and validated with kubernetes-validate."""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from llm_shield.config import Variant
from llm_shield.contract import QUEUES

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "llm-shield"
KUBE_VERSION = "1.30.0"
#: Custom resources the validator has no schema for: their key fields are asserted by the tests instead.
CRD_API_GROUPS = ("keda.sh/", "monitoring.coreos.com/")
RELEASE = "shield"
NAMESPACE = "scanning"

REDIS_PASSWORD = "Redis-Pw-0d1e5c9a7b"
FLOWER_PASSWORD = "flower-pw-77aa31c4"


def values_file(name: str) -> dict:
    return helm.values_from_yaml((CHART / name).read_text())


def render(values: dict | None = None) -> list[dict]:
    """Every manifest the chart renders for `values` (NOTES.txt left out), in template order."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                doc["__template"] = path
                docs.append(doc)
    return docs


def render_text(values: dict | None = None) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)


def render_error(values: dict) -> str:
    with pytest.raises(helm.HelmError) as info:
        render(values)
    return str(info.value)


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def workers(docs: list[dict]) -> list[dict]:
    return [d for d in of_kind(docs, "Deployment")
            if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"]


def container(deployment: dict, name: str | None = None) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if name is None or c["name"] == name)


def env(container_spec: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container_spec.get("env", [])}


def variants_in_args(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--variant"]


def clean(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "__template"}


# Values that turn on everything optional at once, with known passwords, so the checks below see every object.
EVERYTHING = {
    "redis": {"auth": {"password": REDIS_PASSWORD}},
    "flower": {"auth": {"password": FLOWER_PASSWORD}},
    "worker": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "models": {"cache": {"type": "pvc"}},
    "pools": [
        {"name": "cpu-int8", "variant": "int8", "replicas": 2, "concurrency": 3,
         "resources": {"limits": {"cpu": "3", "memory": "3Gi"}},
         "autoscaling": {"enabled": True, "type": "keda", "minReplicas": 1, "maxReplicas": 5}},
        {"name": "cpu-fp32", "variant": "fp32", "replicas": 1, "concurrency": 2,
         "autoscaling": {"enabled": True, "type": "hpa", "minReplicas": 1, "maxReplicas": 3,
                         "targetCPUUtilizationPercentage": 70}},
        {"name": "gpu-fp16", "variant": "fp16", "replicas": 1, "concurrency": 1, "gpu": 2,
         "autoscaling": {"enabled": True, "type": "keda", "minReplicas": 0, "maxReplicas": 2, "listLength": 4}},
    ],
}

CASES = {
    "default": lambda: {},
    "gpu": lambda: values_file("values-gpu.yaml"),
    "external-redis": lambda: values_file("values-external-redis.yaml"),
    "everything": lambda: EVERYTHING,
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, dict, list[dict]]:
    values = CASES[request.param]()
    return request.param, values, render(values)


def test_every_manifest_is_valid_kubernetes(case) -> None:
    name, _, docs = case
    assert docs, f"{name}: nothing rendered"
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith(CRD_API_GROUPS):
            continue
        try:
            kubernetes_validate.validate(clean(doc), KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']} ({doc['__template']}): {exc.message} "
                        f"at {list(exc.path)}")
        checked += 1
    assert checked >= 5


def test_the_validator_is_not_a_no_op() -> None:
    deployment = clean(workers(render())[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["bogusField"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def test_helm_lint_passes() -> None:
    for values in ({}, values_file("values-gpu.yaml"), values_file("values-external-redis.yaml"), EVERYTHING):
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
        errors = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not errors, errors


def test_chart_queue_names_match_the_contract() -> None:
    """The chart's variant -> queue table is the one in shield/contract.py."""
    pools = [{"name": f"p-{v.value}", "variant": v.value, "gpu": 1 if v is Variant.fp16 else 0} for v in Variant]
    deployments = {d["metadata"]["labels"]["llm-shield/pool"]: d for d in workers(render({"pools": pools}))}
    for variant in Variant:
        assert deployments[f"p-{variant.value}"]["metadata"]["labels"]["llm-shield/queue"] == QUEUES[variant]


def test_each_pool_consumes_only_its_own_queue(case) -> None:
    name, values, docs = case
    pools = {p["name"]: p for p in (values.get("pools") or render_values_defaults()["pools"])}
    deployments = workers(docs)
    assert sorted(d["metadata"]["labels"]["llm-shield/pool"] for d in deployments) == sorted(pools)
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in of_kind(docs, "ScaledObject")}
    for deployment in deployments:
        pool = pools[deployment["metadata"]["labels"]["llm-shield/pool"]]
        worker = container(deployment, "worker")
        args = worker["args"]
        assert args[0] == "worker", args
        consumed = {QUEUES[Variant(v)] for v in variants_in_args(args)}
        assert consumed == {QUEUES[Variant(pool["variant"])]}, f"{name}/{pool['name']}: {args}"
        assert deployment["metadata"]["labels"]["llm-shield/queue"] == QUEUES[Variant(pool["variant"])]
        assert "-Q" not in args and "--queues" not in args
        # the init container fetches exactly that variant's models
        for init in deployment["spec"]["template"]["spec"].get("initContainers", []):
            assert init["args"][:2] == ["models", "pull"]
            assert variants_in_args(init["args"]) == [pool["variant"]]
        so = scaled.get(deployment["metadata"]["name"])
        if so is not None:
            triggers = so["spec"]["triggers"]
            assert [t["metadata"]["listName"] for t in triggers] == [QUEUES[Variant(pool["variant"])]]


def render_values_defaults() -> dict:
    with helm.Chart.load(CHART) as chart:
        return chart.values


def test_gpu_pool_requests_gpus_on_gpu_nodes_and_cpu_pools_do_not() -> None:
    docs = render(values_file("values-gpu.yaml"))
    by_pool = {d["metadata"]["labels"]["llm-shield/pool"]: d for d in workers(docs)}
    gpu = by_pool["gpu-fp16"]
    spec = gpu["spec"]["template"]["spec"]
    worker = container(gpu, "worker")
    assert str(worker["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert variants_in_args(worker["args"]) == ["fp16"]
    assert "worker-gpu" in worker["image"]
    assert env(worker)["SHIELD_WORKER_CONCURRENCY"]["value"] == "4"  # four processes share the GPU
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    cpu = container(by_pool["cpu-int8"], "worker")
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    assert "worker-cpu" in cpu["image"]
    # a GPU count from values lands in limits (where Kubernetes wants it) as given
    everything = {d["metadata"]["labels"]["llm-shield/pool"]: d for d in workers(render(EVERYTHING))}
    assert str(container(everything["gpu-fp16"], "worker")["resources"]["limits"]["nvidia.com/gpu"]) == "2"


def test_an_fp16_pool_without_a_gpu_is_refused() -> None:
    message = render_error({"pools": [{"name": "gpu", "variant": "fp16"}]})
    assert "variant fp16 runs on a GPU" in message


def secret_values(docs: list[dict]) -> set[str]:
    values = set()
    for secret in of_kind(docs, "Secret"):
        for encoded in (secret.get("data") or {}).values():
            values.add(base64.b64decode(encoded).decode())
        values.update((secret.get("stringData") or {}).values())
    return values


def test_no_secret_value_appears_outside_secrets(case) -> None:
    name, values, docs = case
    secrets = secret_values(docs)
    if name == "everything":
        assert REDIS_PASSWORD in secrets and f"admin:{FLOWER_PASSWORD}" in secrets
        secrets |= {REDIS_PASSWORD, FLOWER_PASSWORD}
    if name == "default":
        assert len(secrets) == 2  # generated Redis password and Flower user:password
    rendered = render_text(values)
    for path, text in rendered.items():
        for doc_text in [text] if path.endswith("NOTES.txt") else re.split(r"^---\s*$", text, flags=re.M):
            doc = yaml.safe_load(doc_text) if doc_text.strip() and not path.endswith("NOTES.txt") else None
            if doc and doc.get("kind") == "Secret":
                continue
            for secret in secrets:
                for needle in {secret, *secret.split(":", 1)[1:]} - {"admin"}:
                    assert needle not in doc_text, f"{name}: a secret value is written in {path}"
    # the password reaches the containers only through secretKeyRef (and $(VAR) expansion of it)
    for deployment in workers(docs):
        variables = env(container(deployment, "worker"))
        url = variables["SHIELD_REDIS_URL"]
        if name == "external-redis":
            assert url["valueFrom"]["secretKeyRef"] == {"name": "shield-redis", "key": "redis-url"}
        else:
            assert url["value"].startswith("redis://:$(REDIS_PASSWORD)@")
            assert "secretKeyRef" in variables["REDIS_PASSWORD"]["valueFrom"]


def test_generated_passwords_are_url_safe_and_differ() -> None:
    docs = render()
    redis_secret = next(s for s in of_kind(docs, "Secret") if s["metadata"]["name"].endswith("-redis"))
    password = base64.b64decode(redis_secret["data"]["redis-password"]).decode()
    assert len(password) >= 24 and password.isalnum()
    flower_secret = next(s for s in of_kind(docs, "Secret") if s["metadata"]["name"].endswith("-flower"))
    user, _, flower_password = base64.b64decode(flower_secret["data"]["basic-auth"]).decode().partition(":")
    assert user == "admin" and len(flower_password) >= 16 and flower_password != password


def test_termination_grace_exceeds_the_task_time_limit(case) -> None:
    name, _, docs = case
    for deployment in workers(docs):
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        limit = int(env(container(deployment, "worker"))["SHIELD_TASK_TIME_LIMIT"]["value"])
        assert grace > limit, f"{name}: {deployment['metadata']['name']}"


@pytest.mark.parametrize("values, expected", [
    ({"worker": {"terminationGracePeriodSeconds": 300}},
     "worker.terminationGracePeriodSeconds (300) must be greater than worker.taskTimeLimit (300)"),
    ({"worker": {"terminationGracePeriodSeconds": 200, "taskTimeLimit": 250, "taskSoftTimeLimit": 200}},
     "worker.terminationGracePeriodSeconds (200) must be greater than worker.taskTimeLimit (250)"),
    ({"pools": [{"name": "cpu-int8", "variant": "int8", "terminationGracePeriodSeconds": 60}]},
     "pools[cpu-int8].terminationGracePeriodSeconds (60) must be greater than worker.taskTimeLimit (300)"),
    ({"worker": {"visibilityTimeout": 300}},
     "worker.visibilityTimeout (300) must be greater than worker.taskTimeLimit (300)"),
])
def test_rendering_fails_clearly_when_limits_do_not_fit(values: dict, expected: str) -> None:
    assert expected in render_error(values)


def test_a_longer_time_limit_with_a_longer_grace_renders() -> None:
    docs = render({"worker": {"taskTimeLimit": 900, "taskSoftTimeLimit": 840, "terminationGracePeriodSeconds": 960}})
    deployment = workers(docs)[0]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 960
    assert env(container(deployment, "worker"))["SHIELD_TASK_TIME_LIMIT"]["value"] == "900"


def test_schema_rejects_an_unknown_variant() -> None:
    assert "value must be one of" in render_error({"pools": [{"name": "cpu", "variant": "int4"}]})


def test_workers_are_hardened_and_probe_the_heartbeat_file(case) -> None:
    name, _, docs = case
    for deployment in workers(docs):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}
        worker = container(deployment, "worker")
        heartbeat = env(worker)["SHIELD_HEARTBEAT_FILE"]["value"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = worker[probe]["exec"]["command"]
            assert heartbeat in " ".join(command)
            assert not any("celery" in part or "inspect" in part or "import" in part for part in command)
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"]
        assert {m["name"] for m in worker["volumeMounts"]} == {"tmp", "model-cache"}
        if name == "default":
            assert "emptyDir" in volumes["model-cache"]
            assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9808"
            assert worker["ports"][0]["containerPort"] == 9808


def test_liveness_command_really_tells_fresh_from_stale(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    docs = render({"worker": {"heartbeat": {"file": str(heartbeat), "maxAgeSeconds": 30}}})
    worker = container(workers(docs)[0], "worker")
    liveness = worker["livenessProbe"]["exec"]["command"]
    readiness = worker["readinessProbe"]["exec"]["command"]

    def ok(command: list[str]) -> bool:
        return subprocess.run(command, capture_output=True).returncode == 0

    assert not ok(liveness) and not ok(readiness)  # no file yet: models still loading
    heartbeat.touch()
    assert ok(liveness) and ok(readiness)
    old = time.time() - 120
    os.utime(heartbeat, (old, old))
    assert not ok(liveness), shlex.join(liveness)  # stale: the consumer loop is stuck
    assert ok(readiness)


def test_every_pool_has_a_pdb_and_models_come_from_an_init_container(case) -> None:
    name, _, docs = case
    pdbs = {p["spec"]["selector"]["matchLabels"]["llm-shield/pool"] for p in of_kind(docs, "PodDisruptionBudget")}
    for deployment in workers(docs):
        pool = deployment["metadata"]["labels"]["llm-shield/pool"]
        assert pool in pdbs
        spec = deployment["spec"]["template"]["spec"]
        (init,) = spec["initContainers"]
        assert init["image"] == container(deployment, "worker")["image"]
        assert {m["name"] for m in init["volumeMounts"]} >= {"model-cache"}
        assert env(init)["SHIELD_OFFLINE"]["value"] == "false"
        assert env(container(deployment, "worker"))["SHIELD_OFFLINE"]["value"] == "true"


def test_keda_scaled_objects_read_the_queue_list_with_env_credentials(case) -> None:
    name, values, docs = case
    scaled = of_kind(docs, "ScaledObject")
    if name in ("default", "gpu"):
        assert not scaled  # autoscaling is off by default
        return
    deployments = {d["metadata"]["name"]: d for d in workers(docs)}
    assert scaled
    for so in scaled:
        target = deployments[so["spec"]["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"]  # the autoscaler owns the replica count
        worker = container(target, so["spec"]["envSourceContainerName"])
        variables = env(worker)
        (trigger,) = so["spec"]["triggers"]
        meta = trigger["type"], trigger["metadata"]
        assert meta[0] == "redis"
        md = meta[1]
        assert md["addressFromEnv"] in variables and md["passwordFromEnv"] in variables
        assert "valueFrom" in variables[md["passwordFromEnv"]]
        assert "password" not in md and "address" not in md
        concurrency = int(variables["SHIELD_WORKER_CONCURRENCY"]["value"])
        pool = target["metadata"]["labels"]["llm-shield/pool"]
        explicit = {p["name"]: (p.get("autoscaling") or {}).get("listLength") for p in values["pools"]}[pool]
        assert md["listLength"] == str(explicit or concurrency)
        assert md["enableTLS"] == ("true" if name == "external-redis" else "false")
    if name == "everything":
        (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"]["name"].endswith("cpu-fp32")


def test_bundled_redis_is_persistent_and_password_protected() -> None:
    docs = render()
    (sts,) = of_kind(docs, "StatefulSet")
    redis = sts["spec"]["template"]["spec"]["containers"][0]
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert "secretKeyRef" in env(redis)["REDIS_PASSWORD"]["valueFrom"]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    services = {s["metadata"]["name"] for s in of_kind(docs, "Service")}
    assert f"{RELEASE}-llm-shield-redis" in services


def test_external_redis_has_no_bundled_redis_and_needs_a_secret() -> None:
    docs = render(values_file("values-external-redis.yaml"))
    assert not of_kind(docs, "StatefulSet")
    assert not [s for s in of_kind(docs, "Secret") if "redis" in s["metadata"]["name"]]
    flower = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-flower"))
    assert env(container(flower))["SHIELD_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "shield-redis"
    message = render_error({"redis": {"enabled": False}})
    assert "externalRedis.existingSecret" in message


def test_flower_has_auth_from_a_secret_and_healthcheck_probes() -> None:
    docs = render()
    flower = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-flower"))
    c = container(flower)
    assert c["args"][0] == "flower"
    assert env(c)["SHIELD_FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == "basic-auth"
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/healthcheck"
    service = next(s for s in of_kind(docs, "Service") if s["metadata"]["name"].endswith("-flower"))
    assert service["spec"]["ports"][0]["port"] == 5555
    existing = render({"flower": {"auth": {"existingSecret": "my-flower", "existingSecretKey": "auth"}}})
    assert not [s for s in of_kind(existing, "Secret") if s["metadata"]["name"].endswith("-flower")]
    ref = env(container(next(d for d in of_kind(existing, "Deployment") if d["metadata"]["name"].endswith("-flower"))))
    assert ref["SHIELD_FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {"name": "my-flower", "key": "auth"}


def test_notes_explain_flower_and_a_laptop_scan() -> None:
    notes = render_text()["llm-shield/templates/NOTES.txt"]
    assert f"port-forward svc/{RELEASE}-llm-shield-flower 5555" in notes
    assert f"port-forward svc/{RELEASE}-llm-shield-redis 6379" in notes
    assert "llm-shield scan" in notes and "redis://:$PASSWORD@localhost:6379/0" in notes


def test_cache_partitions_and_a_cluster_cache_url_from_a_secret() -> None:
    default = env(container(workers(render())[0]))
    assert default["SHIELD_CACHE_PARTITIONS"]["value"] == "1" and "SHIELD_CACHE_URL" not in default
    values = {"worker": {"cache": {"partitions": 16, "urlSecret": {"name": "shield-cache", "key": "url"}}}}
    for deployment in workers(render(values)):
        variables = env(container(deployment))
        assert variables["SHIELD_CACHE_PARTITIONS"]["value"] == "16"
        assert variables["SHIELD_CACHE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "shield-cache", "key": "url"}
    assert "partitions" in render_error({"worker": {"cache": {"partitions": 0}}})
