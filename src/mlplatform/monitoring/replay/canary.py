"""A canary release on real processes: champion and challenger model servers (serving env),
the weighted router in front, production-like traffic replayed through it, and the
CanaryController judging rounds until it promotes or rolls back.

Used by the replay after a retrained version passed the gate; `on_promote` moves the alias.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

from mlplatform.release import local_stack as ls
from mlplatform.release.canary import CanaryPolicy, CanaryResult, local_controller

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
# The replay starts its servers while the machine is still busy with the retraining that
# produced the challenger, so their start-up gets more time than local_stack's default.
READY_TIMEOUT_S = 180


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
    on_rollback: Callable[[str, str], None] | None = None,
) -> CanaryResult:
    """Run one canary of `challenger` against `champion` (registry versions) on `traffic`.

    The processes log to `workdir`; one that does not come up raises `local_stack.StackError`
    naming it and its log. Every process started is stopped on the way out, whatever happens.
    """
    extra = ["--request-log", str(request_log)] if request_log is not None else []
    with ExitStack() as stack:
        procs: list[ls.Process] = []
        stack.callback(lambda: ls.stop(*procs))  # registered first, so it runs last
        uris = {
            "champion": f"models:/{registered}/{champion}",
            "challenger": f"models:/{registered}/{challenger}",
        }
        # The router starts while the models load; then all three are waited for.
        servers = ls.model_pair(model_name, uris, tracking_uri, workdir, procs, extra, wait=False)
        up = {role: p.url for role, p in servers.items()}
        router = ls.router(up["champion"], up["challenger"], workdir, percent=0)
        procs.append(router)
        for p in servers.values():
            ls.wait_ready(p, ls.READY["model"], READY_TIMEOUT_S)
        ls.wait_ready(router, ls.READY["router"], READY_TIMEOUT_S)
        stop = threading.Event()
        sender = threading.Thread(
            target=_send_loop, args=(router.url, model_name, traffic, stop), daemon=True
        )
        sender.start()
        stack.callback(stop.set)
        controller = local_controller(
            policy,
            router.url,
            up,
            model_name,
            challenger_version=challenger,
            on_promote=on_promote,
            on_rollback=on_rollback,
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
