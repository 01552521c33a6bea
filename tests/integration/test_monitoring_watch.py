"""Scheduled monitoring on a real registry and catalogue: each run judges only the traffic logged
since the last one, a small window waits, drift asks for a retraining until one is recorded,
and labels arriving late are joined to the predictions they belong to."""

from __future__ import annotations

import json

import pytest

from mlplatform.jobs.monitoring import canary_request_job, monitor_job
from mlplatform.monitoring.exporter import metrics_file
from mlplatform.monitoring.triggers import TriggerLog, TriggerPolicy, trigger_log_path
from mlplatform.monitoring.watch import WatchState, evidently_dir, labels_path, state_path
from mlplatform.workspace import Workspace

from .conftest import serve_rows, served_champion

POLICY = TriggerPolicy(min_rows=200, new_labels=10_000, cooldown_windows=1)


@pytest.fixture(scope="module")
def served(trained_taxi, tmp_path_factory):
    return served_champion(trained_taxi, tmp_path_factory, "watch")


def test_windows_are_read_once_small_ones_wait_and_drift_asks_until_recorded(served):
    spec, home = served["spec"], served["home"]
    log_dir = Workspace.locate(home, spec.name).requests
    rows = served["rows"]

    # An ordinary window: a clean random sample of the data the champion trained on.
    ids = serve_rows(served, rows.sample(1500, random_state=1), "a", log_dir)
    first = monitor_job(spec.name, home, "", POLICY)
    assert first.judged and first.rows == 1500
    assert not first.retrain, first.summary()
    assert first.confidence is not None and first.reference_confidence is not None
    assert not any(d["drifted"] for d in first.drift.values()), first.drift
    assert _evidently_runs(home, spec.name) == 1  # what `make drift-ui` shows per window

    # Nothing new: nothing judged twice.
    again = monitor_job(spec.name, home, "", POLICY)
    assert again.rows == 0 and not again.retrain

    # A small window waits; it is judged with the rows that come after it.
    serve_rows(served, rows.sample(50, random_state=2), "b", log_dir)
    small = monitor_job(spec.name, home, "", POLICY)
    assert small.rows == 50 and not small.judged and not small.retrain
    shifted = rows.sample(1000, random_state=3).assign(fare=lambda d: d["fare"] * 10)
    serve_rows(served, shifted, "c", log_dir)
    drifted = monitor_job(spec.name, home, "", POLICY)
    assert drifted.rows == 1050 and drifted.judged
    assert drifted.drift["fare"]["drifted"] and drifted.retrain
    assert drifted.reasons == ["drift"]
    assert _evidently_runs(home, spec.name) == 2  # the small window was not judged alone
    # The gauges the cluster's drift exporter serves: this window's, fare over its threshold.
    page = metrics_file(Workspace.locate(home, spec.name).monitoring).read_text()
    score = _sample(page, "mlplatform_feature_drift_score", 'feature="fare"')
    assert score > _sample(page, "mlplatform_feature_drift_threshold", 'feature="fare"')

    # The retraining did not happen (a failed run): the next run asks again, once per reason.
    serve_rows(served, shifted.sample(300, random_state=4), "d", log_dir)
    retry = monitor_job(spec.name, home, "", POLICY)
    assert retry.retrain and retry.reasons == ["drift"]
    assert len(WatchState.load(state_path(home, spec.name)).pending) == 1
    assert any("has not finished" in n for n in retry.notes)

    # Labels of the first window arrive: joined by request id, quality per version.
    truth = (rows.loc[rows.sample(1500, random_state=1).index, spec.label]).astype(int)
    labels = labels_path(home, spec.name)
    labels.write_text("".join(
        json.dumps({"request_id": r, "row": 0, "label": int(y)}) + "\n"
        for r, y in zip(ids, truth, strict=True)
    ))
    labelled = monitor_job(spec.name, home, "", POLICY)
    assert labelled.new_labels == 1500
    overall = labelled.performance[f"{spec.name}-classifier/{served['version']}|overall"]
    assert overall["n"] == 1500 and 0.5 < overall["auc"] <= 1.0

    # A retraining refused by the gate closes the triggers and cools the policy down.
    out = canary_request_job(spec.name, home, "999", "refused: test", 5)
    assert out["status"] == "refused by the gate" and out["triggers"] == 1
    assert not WatchState.load(state_path(home, spec.name)).pending
    closed = TriggerLog(trigger_log_path(home, spec.name)).read()[-1]
    assert closed["reason"] == "drift" and closed["retrained_version"] == "999"
    serve_rows(served, shifted.sample(300, random_state=5), "e", log_dir)
    cooling = monitor_job(spec.name, home, "", POLICY)
    assert not cooling.retrain and cooling.fired and cooling.fired[0]["held"]


def _sample(page: str, name: str, label: str) -> float:
    (line,) = [x for x in page.splitlines() if x.startswith(name + "{") and label in x]
    return float(line.rsplit(" ", 1)[1])


def _evidently_runs(home, usecase: str) -> int:
    from evidently.ui.workspace import Workspace as EvidentlyWorkspace

    ws = EvidentlyWorkspace(str(evidently_dir(Workspace.locate(home, usecase))))
    projects = ws.search_project(f"{usecase} served traffic")
    return len(ws.list_runs(projects[0].id)) if projects else 0


def test_a_missing_request_log_says_where_it_looked(served, tmp_path):
    with pytest.raises(FileNotFoundError, match="--request-log"):
        monitor_job(served["spec"].name, served["home"], tmp_path / "nowhere", POLICY)
