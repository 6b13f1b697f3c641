"""The container image definition and the Kubernetes manifests, checked offline."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OVERLAYS = sorted(p.name for p in (REPO / "deploy" / "overlays").iterdir())

# The fields of the Prometheus Operator's ServiceMonitor CRD that we rely on (a CRD has no
# schema in kubernetes-validate).
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object", "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "required": ["matchLabels"]},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["port", "path"], "additionalProperties": False,
                    "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                   "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}}}},
            },
        },
    },
}

# KubeRay's RayCluster (ray.io/v1): the fields ftserve relies on, from the CRD's required fields and
# types. Its pod templates are checked separately, as Pods, against the Kubernetes schemas.
RAY_CLUSTER = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "spec": {
            "type": "object", "required": ["headGroupSpec"],
            "properties": {
                "rayVersion": {"type": "string"},
                "enableInTreeAutoscaling": {"type": "boolean"},
                "autoscalerOptions": {"type": "object", "properties": {"idleTimeoutSeconds": {"type": "integer"}}},
                "headGroupSpec": {"type": "object", "required": ["template"], "properties": {
                    "rayStartParams": {"type": "object", "additionalProperties": {"type": "string"}},
                    "template": {"type": "object", "required": ["spec"]}}},
                "workerGroupSpecs": {"type": "array", "items": {
                    "type": "object", "required": ["groupName", "template"],
                    "properties": {
                        "groupName": {"type": "string"},
                        "replicas": {"type": "integer", "minimum": 0},
                        "minReplicas": {"type": "integer", "minimum": 0},
                        "maxReplicas": {"type": "integer", "minimum": 1},
                        "rayStartParams": {"type": "object", "additionalProperties": {"type": "string"}},
                        "template": {"type": "object", "required": ["spec"]}}}},
            },
        },
    },
}


def _validate_ray_cluster(doc: dict, version: str) -> None:
    jsonschema.validate(doc, RAY_CLUSTER)
    spec = doc["spec"]
    for template in [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec.get("workerGroupSpecs", [])]:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ray"}, "spec": template["spec"]}
        kubernetes_validate.validate(pod, version, strict=True)


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        path = shutil.which(name)
    assert path, f"{name} is installed with the test extra"
    return str(path)


def test_dockerfile_is_clean_under_hadolint():
    proc = subprocess.run([_tool("hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_builds_both_variants_as_non_root_with_a_healthcheck():
    text = (REPO / "Dockerfile").read_text()
    assert text.count("\nFROM ") >= 2  # multi-stage
    assert "ARG DEVICE=gpu" in text and '".[$DEVICE,ray]"' in text
    assert "USER 10001:10001" in text and 'VOLUME ["/data"]' in text and "HEALTHCHECK" in text


def _render(overlay: str) -> list[dict]:
    proc = subprocess.run([_tool("kubectl"), "kustomize", str(REPO / "deploy" / "overlays" / overlay)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_validates(overlay):
    docs = _render(overlay)
    kinds = sorted(d["kind"] for d in docs)
    assert {"Deployment", "Service", "PersistentVolumeClaim", "ServiceMonitor"} <= set(kinds)
    assert kinds.count("Deployment") == 1
    version = kubernetes_validate.latest_version()
    for doc in docs:
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            jsonschema.validate(doc, SERVICE_MONITOR)
        elif doc["apiVersion"] == "ray.io/v1":
            _validate_ray_cluster(doc, version)
        else:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_probes_keys_and_storage(overlay):
    docs = {d["kind"]: d for d in _render(overlay)}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/ready"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FTSERVE_API_KEY_FILE"].startswith("/etc/ftserve/keys/")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "ftserve-api-keys"
    # the admin key and the key secret come from a Secret; replicas sharing a database must have them
    admin = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
             if e["name"] in ("FTSERVE_ADMIN_KEY", "FTSERVE_KEY_SECRET")}
    assert {ref["name"] for ref in admin.values()} == {"ftserve-admin"} and len(admin) == 2
    assert all(ref["optional"] is (overlay != "scale-out") for ref in admin.values())
    if overlay == "scale-out":  # state is elsewhere: the data dir is a cache
        assert set(volumes["data"]) == {"name", "emptyDir"}
    else:
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "ftserve-data"
        assert docs["PersistentVolumeClaim"]["metadata"]["name"] == "ftserve-data"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > float(env["FTSERVE_SHUTDOWN_TIMEOUT_SECONDS"])
    assert container["resources"]["requests"]["cpu"]
    service = docs["Service"]
    assert service["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]


def test_gpu_overlay_asks_for_a_gpu_and_cpu_demo_for_none():
    gpu = {d["kind"]: d for d in _render("gpu")}["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    cpu = {d["kind"]: d for d in _render("cpu-demo")}["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1" and gpu["image"].endswith(":gpu")
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {}) and cpu["image"].endswith(":cpu")
    assert {"ftserve-api-keys"} == {d["metadata"]["name"] for d in _render("cpu-demo") if d["kind"] == "Secret"}


def test_scale_out_overlay_runs_stateless_replicas_on_postgres_and_s3():
    docs = _render("scale-out")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] >= 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    # the database URL and the S3 credentials come from Secrets, never from the manifest itself
    assert env["FTSERVE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "ftserve-database"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "ftserve-s3"
    assert env["FTSERVE_STORAGE_URL"]["value"].startswith("s3://")
    assert env["FTSERVE_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # no volume holds state: the data dir is an emptyDir, the only claim is the read-only base model
    claims = [d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert claims == ["ftserve-models"]
    assert next(d for d in docs if d["kind"] == "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadOnlyMany"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True
    # readiness is /ready, which answers 503 while the database or the object store is unreachable
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert any(d["kind"] == "PodDisruptionBudget" for d in docs)


def test_scale_out_trains_on_a_kuberay_cluster_not_in_the_serving_pods():
    docs = _render("scale-out")
    (cluster,) = [d for d in docs if d["kind"] == "RayCluster"]
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FTSERVE_TRAINING_BACKEND"] == "ray"
    assert env["RAY_ADDRESS"] == f"http://{cluster['metadata']['name']}-head-svc:8265"  # KubeRay's head Service
    (gpu,) = cluster["spec"]["workerGroupSpecs"]
    worker = gpu["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1" and float(env["FTSERVE_RAY_NUM_GPUS"]) >= 1
    assert 0 <= gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    # the workers read the base model where the serving pods do, and train on the same image
    assert {m["mountPath"] for m in worker["volumeMounts"]} >= {"/models"}
    assert worker["image"] == container["image"]
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"  # the Job Submission API, for the replicas


def test_the_grafana_dashboard_plots_only_metrics_the_server_exports():
    from prometheus_client import generate_latest

    from service.metrics import Metrics

    dashboard = json.loads((REPO / "deploy" / "base" / "grafana" / "ftserve.json").read_text())
    exported = set(re.findall(r"^# TYPE (\w+) (\w+)", generate_latest(Metrics().registry).decode(), re.M))
    names = {n for n, _ in exported} | {f"{n}_{s}" for n, kind in exported for s in ("total", "bucket", "count", "sum")}
    used = {m for panel in dashboard["panels"] for t in panel["targets"]
            for m in re.findall(r"\bftserve_\w+", t["expr"])}
    assert used and used <= names, used - names
    assert {"ftserve_model_requests_total", "ftserve_adapters_loaded", "ftserve_adapter_load_seconds_bucket",
            "ftserve_model_request_latency_seconds_bucket"} <= used
    (configmap,) = [d for d in _render("cpu-demo") if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["ftserve.json"]) == dashboard
