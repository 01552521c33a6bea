"""A canary release on real processes: champion and challenger model servers (serving env),
the weighted router in front, production-like traffic replayed through it, and the
CanaryController judging rounds until it promotes or rolls back.

Used by the replay after a retrained version passed the gate; `on_promote` moves the alias.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

from mlplatform.monitoring.prometheus import free_port
from mlplatform.serving.canary import CanaryPolicy, CanaryResult, local_controller
from mlplatform.workspace import REPO_ROOT

SERVING_PY = REPO_ROOT / ".venv-serving" / "bin" / "python"
# Loose latency bounds, as in tests/integration/test_canary.py: on a shared 2-core machine the
# p99 of two identical servers differs by >1.25x in 7-28% of rounds. Errors and the KPI still
# decide; three passed rounds promote, three failed ones roll back. The KPI check (positive
# share vs the champion's) is off: after an input drift it is the champion's share that is
# wrong, and the head-to-head on labelled recent rows has already judged quality.
REPLAY_POLICY = CanaryPolicy(
    challenger_percent=50,
    interval_s=2.0,
    warmup_s=1.0,
    iterations=3,
    failure_threshold=3,
    max_p99_ms=2000.0,
    max_p99_ratio=3.0,
    max_kpi_drop=1.0,
)


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [str(SERVING_PY), "-m", *args], stdout=out, stderr=subprocess.STDOUT
        )


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} not ready within {timeout_s} s:\n{log.read_text()[-2000:]}")


def canary_release(
    model_name: str,
    registered: str,
    champion: str,
    challenger: str,
    tracking_uri: str,
    traffic: pd.DataFrame,
    workdir: Path,
    on_promote: Callable[[str], None],
    policy: CanaryPolicy = REPLAY_POLICY,
    log: Callable[[str], None] = print,
    request_log: Path | None = None,
) -> CanaryResult:
    """Run one canary of `challenger` against `champion` (registry versions) on `traffic`."""
    if not SERVING_PY.exists():
        raise RuntimeError(f"{SERVING_PY} is missing: `make setup-serving` builds it")
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {"champion": free_port(), "challenger": free_port(), "router": free_port()}
    procs: dict[str, subprocess.Popen] = {}
    with ExitStack() as stack:
        for side, version in (("champion", champion), ("challenger", challenger)):
            args = [
                "mlplatform.serving.server",
                "--model-name",
                model_name,
                "--model-uri",
                f"models:/{registered}/{version}",
                "--tracking-uri",
                tracking_uri,
                "--port",
                str(ports[side]),
            ]
            if request_log is not None:
                args += ["--request-log", str(request_log)]
            procs[side] = _spawn(args, workdir / f"{side}.log")
            stack.callback(_stop, procs[side])
        up = {s: f"http://127.0.0.1:{ports[s]}" for s in ("champion", "challenger")}
        procs["router"] = _spawn(
            [
                "mlplatform.serving.router",
                "--champion",
                up["champion"],
                "--challenger",
                up["challenger"],
                "--challenger-percent",
                "0",
                "--port",
                str(ports["router"]),
            ],
            workdir / "router.log",
        )
        stack.callback(_stop, procs["router"])
        for side in ("champion", "challenger"):
            _wait_ready(f"{up[side]}/v2/health/ready", procs[side], workdir / f"{side}.log")
        router = f"http://127.0.0.1:{ports['router']}"
        _wait_ready(f"{router}/router/state", procs["router"], workdir / "router.log")
        stop = threading.Event()
        sender = threading.Thread(
            target=_send_loop, args=(router, model_name, traffic, stop), daemon=True
        )
        sender.start()
        stack.callback(stop.set)
        controller = local_controller(
            policy,
            router,
            up,
            model_name,
            challenger_version=challenger,
            on_promote=on_promote,
            log=log,
        )
        return controller.run()


def _send_loop(router: str, model: str, traffic: pd.DataFrame, stop: threading.Event) -> None:
    """Single-row requests, cycling through `traffic`, each with its row's request id."""
    rows = json.loads(traffic.drop(columns=["request_id"]).to_json(orient="records"))
    ids = traffic["request_id"].astype(str).tolist()
    i = 0
    while not stop.is_set():
        body = json.dumps({"instances": [rows[i % len(rows)]]}).encode()
        req = urllib.request.Request(
            f"{router}/v1/models/{model}:predict",
            body,
            {"Content-Type": "application/json", "x-request-id": f"canary-{ids[i % len(ids)]}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
        except OSError:
            time.sleep(0.05)  # a refused request is counted by the router; keep the pace
        i += 1


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
