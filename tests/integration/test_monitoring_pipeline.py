"""The monitoring pipeline as users run it: compiled for Kubeflow, and once with kfp.local through
`mlplatform monitor once` on a served champion's request log."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from mlplatform.monitoring.triggers import TriggerLog, trigger_log_path
from mlplatform.monitoring.watch import WatchState, state_path
from mlplatform.registry import models as reg
from mlplatform.workspace import Workspace

from ..conftest import source_of
from .conftest import serve_rows, served_champion

pytestmark = pytest.mark.integration


def _once(repo_root, home, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", "monitor", "once", "--usecase", "taxi",
         "--home", str(home), "--min-rows", "200", *args],
        capture_output=True, text=True, cwd=repo_root, timeout=1800,
    )


def test_compiled_monitoring_pipeline_is_current(tmp_path, repo_root):
    from pipelines.monitoring import compile_to

    fresh = compile_to(tmp_path)
    checked_in = repo_root / "pipelines" / "compiled" / "monitoring.yaml"
    assert checked_in.read_text() == fresh.read_text(), "run `make compile` and commit"
    spec = next(yaml.safe_load_all(checked_in.read_text()))
    names = [t["taskInfo"]["name"] for t in spec["root"]["dag"]["tasks"].values()]
    assert {"watch-traffic", "retrain-features", "retrain-keras", "register-retrained",
            "request-canary"} <= set(names)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"request_log", "families", "min_rows", "canary_percent"} <= set(params)


@pytest.fixture(scope="module")
def served(trained_taxi, tmp_path_factory):
    return served_champion(trained_taxi, tmp_path_factory, "monitoring-pipeline")


def test_monitor_once_judges_a_quiet_window_and_skips_retraining(served, repo_root):
    spec, home = served["spec"], served["home"]
    serve_rows(served, served["rows"].sample(800, random_state=11), "q",
               Workspace.locate(home, spec.name).requests)
    out = _once(repo_root, home)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "800 rows, retrain no" in out.stdout
    state = WatchState.load(state_path(home, spec.name))
    assert state.windows == 1 and not state.pending
    # Nothing retrained, nothing registered beyond the champion.
    assert reg.alias_version(spec, reg.CHALLENGER) is None


def test_a_bad_option_is_refused_before_anything_runs(served, repo_root, tmp_path):
    out = _once(repo_root, served["home"], "--families", "logistic,forest")
    assert out.returncode == 2 and "forest" not in out.stdout and "families" in out.stderr
    missing = _once(repo_root, tmp_path / "empty-home")
    assert missing.returncode == 2 and "no request log yet" in missing.stderr


@pytest.mark.slow
def test_drift_retrains_gates_and_requests_a_canary(served, repo_root, tmp_path):
    """The replay's story on a schedule: fares ten times higher drift in the served traffic; the
    labelled batch of that period (quarantined by the gate, released by the operator as a
    confirmed unit change, as the replay does) joins the accepted data; the run retrains (one
    family, to stay short), registers through the battery and the gate, which the champion now
    loses on the newest held-out rows, and asks for a canary."""
    from mlplatform.jobs.data import gate_for

    spec, home = served["spec"], served["home"]
    shifted = served["rows"].sample(1000, random_state=12).assign(fare=lambda d: d["fare"] * 10)
    serve_rows(served, shifted, "s", Workspace.locate(home, spec.name).requests)
    raw = pd.read_csv(source_of(spec))
    recent = raw.sort_values("trip_start_timestamp").tail(5000)
    year = 365 * 86400
    batch = recent.assign(
        fare=recent["fare"] * 10, trip_start_timestamp=recent["trip_start_timestamp"] + year
    )
    path = tmp_path / "fare-in-cents.csv"
    batch.to_csv(path, index=False)
    gate = gate_for(spec.name, home)
    judged = gate.process(path)
    if not judged.accepted:
        gate.release(judged.record.batch_id, "operator: fare now in cents upstream", force=True)

    out = _once(repo_root, home, "--families", "logistic")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "retrain yes" in out.stdout
    closed = TriggerLog(trigger_log_path(home, spec.name)).read()[-1]
    assert closed["reason"] == "drift" and closed["retrained_version"] not in ("", None)
    assert closed["canary"] == "requested", closed["registry_gate"]
    assert not WatchState.load(state_path(home, spec.name)).pending
    requests = Workspace.locate(home, spec.name).monitoring / "canary_requests.jsonl"
    request = json.loads(requests.read_text().splitlines()[-1])
    assert request["version"] == closed["retrained_version"] == reg.alias_version(
        spec, reg.CHALLENGER
    )
    assert "--canary-percent 5" in request["cluster"]
    alerts = [json.loads(x) for x in (home / spec.name / "alerts.jsonl").read_text().splitlines()]
    assert {"retraining_triggered", "canary_requested"} <= {a["kind"] for a in alerts}
