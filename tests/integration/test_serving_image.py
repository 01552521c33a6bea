"""The serving image, built here with the machine's engine (docker, else podman), serves a
trained artifact mounted where KServe's storage initializer puts it (/mnt/models): health, v1 and
v2 answered with the scores the artifact gives outside the container, and an artifact whose
reference rows it scores differently refused (exit 2) at load.

No engine is a failure naming the reason, not a skip: `bash images/engine.sh` sets one up."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import mlflow
import numpy as np
import pytest

from mlplatform.cluster import images

pytestmark = [pytest.mark.integration, pytest.mark.containers]
MOUNT = "/mnt/models"


@pytest.fixture(scope="module", autouse=True)
def _tracking(trained_taxi):
    """The shared trained run's MLflow store (an earlier module may have pointed elsewhere)."""
    from mlplatform.tracking import use_workspace

    use_workspace(trained_taxi.home, trained_taxi.spec.name)


@pytest.fixture(scope="module")
def serving_image(repo_root):
    # Layers are cached: after the first build (the lock, ~2 min) this re-copies the source.
    (built,) = images.build(repo_root, ("serving",))
    print(f"\n[serving image] {built.name} built in {built.seconds} s, {built.size_mb} MB")
    return images.engine(), built.name


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(engine, image, folder, port, detach=True, name=None):
    cmd = [engine, "run", "--rm", "--network", "host", "-v", f"{folder}:{MOUNT}:ro"]
    if detach:
        cmd += ["-d", "--name", name]
    # The image binds 0.0.0.0:8080 for a pod; a test server listens on loopback only.
    cmd += [image, "--model-name", "taxi", "--model-uri", MOUNT,
            "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _wait_ready(engine, name, base, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        state = subprocess.run([engine, "inspect", name, "--format", "{{.State.Running}}"],
                               capture_output=True, text=True)
        if state.returncode != 0 or state.stdout.strip() != "true":
            logs = subprocess.run([engine, "logs", name], capture_output=True, text=True)
            tail = logs.stdout[-2000:] + logs.stderr[-2000:]
            pytest.fail(f"the serving container stopped: {tail}")
        time.sleep(1)
    pytest.fail(f"the serving container was not ready in {timeout} s")


def test_the_serving_image_serves_a_mounted_artifact(serving_image, trained_taxi, tmp_path):
    engine, image = serving_image
    folder = mlflow.artifacts.download_artifacts(trained_taxi.run.model_uri,
                                                 dst_path=str(tmp_path / "model"))
    local = mlflow.pyfunc.load_model(folder)
    rows = json.loads(local.input_example.to_json(orient="records"))
    expected = local.predict(local.input_example)["probability"].to_numpy()
    port, name = _port(), f"mlplatform-serving-{uuid.uuid4().hex[:8]}"
    started = _run(engine, image, folder, port, name=name)
    assert started.returncode == 0, started.stderr
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(engine, name, base)
        logs = subprocess.run([engine, "logs", name], capture_output=True, text=True)
        assert "scoring check passed" in logs.stdout + logs.stderr
        v1 = _post(f"{base}/v1/models/taxi:predict", {"instances": rows})["predictions"]
        np.testing.assert_allclose([p["probability"] for p in v1], expected, atol=1e-6)
        inputs = [{"name": k, "shape": [len(rows)],
                   "datatype": "BYTES" if any(isinstance(r[k], str) for r in rows) else "FP64",
                   "data": [r[k] for r in rows]} for k in rows[0]]
        v2 = _post(f"{base}/v2/models/taxi/infer", {"inputs": inputs})
        out = {o["name"]: o["data"] for o in v2["outputs"]}
        np.testing.assert_allclose(out["probability"], expected, atol=1e-6)
    finally:
        subprocess.run([engine, "rm", "-f", name], capture_output=True)


def test_the_serving_image_refuses_an_artifact_it_scores_differently(
    serving_image, trained_taxi, tmp_path
):
    engine, image = serving_image
    folder = trained_taxi.skewed_model(tmp_path / "skewed")
    out = _run(engine, image, folder, _port(), detach=False)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "scores the artifact's reference rows differently" in out.stdout + out.stderr
