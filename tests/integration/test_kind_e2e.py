"""End to end on a real kind cluster: images, KFP + KServe, the training pipeline submitted and
finished, the registered model served by an InferenceService, its canary share moved.

Runs only where Docker (with a daemon) and kind exist; elsewhere it is skipped and says why.
It takes tens of minutes (images of several GB, cluster installs), hence `slow`:
`make test-slow PYTEST_ARGS=tests/integration/test_kind_e2e.py`. MLPLATFORM_KEEP_CLUSTER=1
keeps the cluster afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = [sys.executable, "-m", "mlplatform.cli"]
CONTEXT = "kind-mlplatform"


def _why_not() -> str:
    """'' when this machine can run a kind cluster, else the reason."""
    from mlplatform.cluster.tools import ToolMissing, docker_running, require

    try:
        require("docker", "kind", "kubectl")
    except ToolMissing as exc:
        return str(exc)
    problem = docker_running()
    return f"the Docker daemon does not answer: {problem}" if problem else ""


@pytest.fixture(scope="module")
def cluster():
    reason = _why_not()
    if reason:
        pytest.skip(f"no kind cluster possible here ({reason})")
    _cli("cluster", "up", timeout=3600)
    yield CONTEXT
    if not os.environ.get("MLPLATFORM_KEEP_CLUSTER"):
        _cli("cluster", "down", timeout=600)


def _cli(*args: str, timeout: float = 600) -> str:
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"mlplatform {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _port_forward(namespace: str, target: str, remote: int):
    port = _free_port()
    proc = subprocess.Popen(
        [
            "kubectl",
            "--context",
            CONTEXT,
            "port-forward",
            "-n",
            namespace,
            target,
            f"{port}:{remote}",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_train_on_kfp_then_serve_with_kserve_and_move_the_canary(cluster):
    import kfp

    # 1. The training pipeline, as compiled and checked in, runs on Kubeflow Pipelines.
    with _port_forward("kubeflow", "svc/ml-pipeline-ui", 80) as kfp_url:
        out = _cli("cluster", "submit", "--usecase", "taxi", "--host", kfp_url)
        run_id = re.search(r"^run (\S+): (\S+)$", out, re.M).group(1)
        assert f"{kfp_url}/#/runs/details/{run_id}" in out
        run = kfp.Client(host=kfp_url).wait_for_run_completion(run_id, timeout=5400)
        assert run.state == "SUCCEEDED", run
    # 2. The registered challenger is served from the home volume by the serving image.
    with _port_forward("mlplatform", "svc/mlflow", 5000) as mlflow_url:
        out = _cli(
            "cluster", "deploy", "--usecase", "taxi", "--alias", "challenger",
            "--tracking-uri", mlflow_url,
        )  # fmt: skip
    assert "pvc://mlplatform-home/" in out
    subprocess.run(
        [
            "kubectl",
            "--context",
            CONTEXT,
            "wait",
            "--for=condition=Ready",
            "isvc/taxi",
            "-n",
            "mlplatform",
            "--timeout=900s",
        ],  # fmt: skip
        check=True,
    )
    status = json.loads(
        subprocess.run(
            [
                "kubectl",
                "--context",
                CONTEXT,
                "get",
                "isvc/taxi",
                "-n",
                "mlplatform",
                "-o",
                "json",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["status"]
    host = status["url"].split("://", 1)[1]
    with _port_forward("kourier-system", "svc/kourier", 80) as ingress:
        req = urllib.request.Request(f"{ingress}/v1/models/taxi", headers={"Host": host})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read())["ready"] is True
    # 3. The canary controller's backend moves the share on the real InferenceService.
    from mlplatform.release.kserve_backend import KServeBackend

    backend = KServeBackend.from_kubeconfig("taxi", "mlplatform", context=CONTEXT)
    backend.set_challenger_percent(0)
    assert backend.state()["canary_traffic_percent"] == 0


def test_the_skip_reason_names_what_is_missing():
    """Where the cluster cannot run, the reason is specific (what to install or start)."""
    reason = _why_not()
    if not reason:
        pytest.skip("docker and kind are present: the end-to-end test above runs instead")
    assert any(tool in reason for tool in ("docker", "kind", "kubectl", "Docker daemon"))
    if shutil.which("kind") is None:
        assert "install kind" in reason
