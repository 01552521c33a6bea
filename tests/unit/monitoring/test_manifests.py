"""The monitoring loop's cluster manifests wired together (tests/unit/cluster/test_manifests.py
builds and schema-checks every kustomization, these included): KServe's logger posts to the
payload-logger Service, Prometheus alerts go to the Alertmanager Service, Alertmanager's
ConfigMap is the repository's config (checked with amtool), its alert-log receiver is the
sidecar."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from functools import cache
from urllib.parse import urlparse

import pytest
import yaml

from mlplatform.monitoring import alertmanager as am
from mlplatform.workspace import REPO_ROOT

MANIFESTS = REPO_ROOT / "manifests"
DATA_HOME = "/data/mlplatform"  # the pods' platform home (the compiled pipelines' `home`)


@cache
def _objects() -> tuple[dict, ...]:
    from mlplatform.cluster.tools import which

    kubectl = which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: run `make setup` (the pipeline env ships it)")
    out = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / "overlays" / "kind")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return tuple(o for o in yaml.safe_load_all(out.stdout) if o)


def _one(kind: str, name: str) -> dict:
    (obj,) = [o for o in _objects() if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    return obj


def _container(deployment: str, name: str) -> dict:
    pod = _one("Deployment", deployment)["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == name]
    return c


def _service_port(url: str) -> None:
    """The URL names a Service of the manifests on one of its ports."""
    parsed = urlparse(url)
    name, namespace = (
        parsed.hostname.split(".")[:2]
        if "." in parsed.hostname
        else (
            parsed.hostname,
            "mlplatform",
        )
    )
    svc = _one("Service", name)
    assert svc["metadata"]["namespace"] == namespace, url
    assert (parsed.port or 80) in [p["port"] for p in svc["spec"]["ports"]], url


def test_kserve_logs_every_inference_to_the_payload_logger():
    isvc = _one("InferenceService", "taxi")
    logger = isvc["spec"]["predictor"]["logger"]
    assert logger["mode"] == "all"
    assert "X-Request-Id" in logger["metadataHeaders"]  # the id delayed labels join on
    _service_port(logger["url"])
    receiver = _container("payload-logger", "payload-logger")
    assert receiver["command"] == ["python", "-m", "mlplatform.monitoring.payload_logger"]
    assert "--host=0.0.0.0" in receiver["args"]
    assert any(a.startswith("--log=/data/mlplatform/{model}/") for a in receiver["args"])
    deployment = _one("Deployment", "payload-logger")
    assert deployment["spec"]["replicas"] == 1  # both halves must meet in one process


def test_the_drift_exporter_serves_what_the_monitoring_pipeline_writes():
    from mlplatform.monitoring.exporter import metrics_file
    from mlplatform.workspace import Workspace

    exporter = _container("drift-exporter", "drift-exporter")
    assert exporter["command"] == ["python", "-m", "mlplatform.monitoring.metrics_files"]
    (pattern,) = [a.split("=", 1)[1] for a in exporter["args"] if a.startswith("--glob=")]
    # The file a watch-traffic task writes on the home volume matches the pattern.
    written = metrics_file(Workspace.locate(DATA_HOME, "taxi").monitoring)
    assert fnmatch.fnmatch(str(written), pattern)
    pod = _one("Deployment", "drift-exporter")["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    port = int(pod["metadata"]["annotations"]["prometheus.io/port"])
    assert port in [p["containerPort"] for p in exporter["ports"]]


def test_prometheus_sends_alerts_to_the_alertmanager_service():
    config = yaml.safe_load(_one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    (target,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    _service_port(f"http://{target}")


def test_prometheus_loads_the_repository_rules():
    config = yaml.safe_load(_one("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    data = _one("ConfigMap", "prometheus-rules")["data"]
    for path in sorted((REPO_ROOT / "monitoring" / "prometheus" / "rules").glob("*.yml")):
        assert data.get(path.name) == path.read_text(), (
            f"manifests/base/prometheus/rules/{path.name} differs from "
            f"monitoring/prometheus/rules/{path.name}: copy the latter over the former"
        )
    mounts = _container("prometheus", "prometheus")["volumeMounts"]
    assert {"name": "rules", "mountPath": "/etc/prometheus/rules"} in mounts


def test_alertmanager_configmap_is_the_repository_config_and_passes_amtool(tmp_path):
    if shutil.which("amtool") is None:
        pytest.fail("amtool is missing: `make setup` installs prometheus-alertmanager")
    data = _one("ConfigMap", "alertmanager-config")["data"]["alertmanager.yml"]
    assert data == am.CONFIG.read_text(), (
        "manifests/base/alertmanager/alertmanager.yml differs from "
        "monitoring/alertmanager/alertmanager.yml: copy the latter over the former"
    )
    path = tmp_path / "alertmanager.yml"
    path.write_text(data)
    out = am.check_config(path)
    assert out.returncode == 0, out.stdout + out.stderr
    container = _container("alertmanager", "alertmanager")
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in container["args"]
    # The alert-log receiver is the sidecar, on the port the config names.
    sidecar = _container("alertmanager", "alert-log")
    assert sidecar["command"] == ["python", "-m", "mlplatform.monitoring.alert_log"]
    assert f"--port={urlparse(am.ALERT_LOG_URL).port}" in sidecar["args"]
