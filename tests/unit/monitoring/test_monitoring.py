"""Monitoring building blocks: the request log, drift scores, delayed-label performance, the
business KPI of each spec, and the retraining trigger policy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlplatform.data.drift import ReferenceProfile, js_divergence
from mlplatform.monitoring.drift import served_drift
from mlplatform.monitoring.performance import (
    LabelLog,
    auc,
    confidence,
    join_labels,
    kpi_value,
    performance_table,
)
from mlplatform.monitoring.requestlog import RequestLog, RequestLogConfig, log_files
from mlplatform.monitoring.triggers import (
    TriggerLog,
    TriggerPolicy,
    TriggerState,
    evaluate_window,
    retrained,
)
from mlplatform.monitoring.windows import read_log
from mlplatform.spec import SpecError, load_spec


@pytest.fixture(scope="module")
def taxi_rows(taxi, shared_data):
    return pd.read_csv(shared_data / "chicago_taxi" / "data.csv")


# --- request log ------------------------------------------------------------------------


def test_request_log_keeps_every_row_with_its_request_id(tmp_path):
    log = RequestLog(RequestLogConfig(tmp_path, flush_rows=3))
    rows = [{"fare": 12.5, "payment_type": "Cash"}, {"fare": float("nan"), "payment_type": None}]
    rid = log.record("abc", "taxi", "taxi-classifier/1", rows, [0.2, 0.9], [0, 1], ts=100.0)
    log.record(None, "taxi", "taxi-classifier/1", rows[:1], [0.4], [0], ts=101.0)
    log.close()
    df = read_log(tmp_path)
    assert rid == "abc" and len(df) == 3
    first = df[df["request_id"] == "abc"].sort_values("row")
    assert list(first["row"]) == [0, 1] and list(first["prediction"]) == [0, 1]
    assert first["fare"].isna().iloc[1]  # NaN is logged as null, the line stays valid JSON
    assert df["request_id"].nunique() == 2  # a request without an id gets a generated one


def test_request_log_storage_is_bounded(tmp_path):
    cfg = RequestLogConfig(tmp_path, max_file_rows=10, max_files=3, flush_rows=5)
    log = RequestLog(cfg)
    for i in range(100):
        log.record(f"r{i}", "m", "v", [{"x": i}], [0.5], [1], ts=float(i))
    log.close()
    files = log_files(tmp_path)
    assert len(files) <= 3
    df = read_log(tmp_path)
    assert len(df) <= 30 and df["ts"].max() == 99.0  # the newest rows are the ones kept


def test_request_log_samples_requests(tmp_path):
    log = RequestLog(RequestLogConfig(tmp_path, sample_rate=0.2), seed=3)
    kept = sum(
        log.record(str(i), "m", "v", [{"x": 1}], [0.5], [1]) is not None for i in range(2000)
    )
    log.close()
    assert 300 < kept < 500


def test_request_log_config_errors_name_the_setting(tmp_path, monkeypatch):
    assert RequestLogConfig.from_env(None, None) is None  # off by default
    monkeypatch.setenv("MLPLATFORM_REQUEST_LOG_DIR", str(tmp_path))
    monkeypatch.setenv("MLPLATFORM_REQUEST_LOG_SAMPLE", "most")
    with pytest.raises(ValueError, match="MLPLATFORM_REQUEST_LOG_SAMPLE"):
        RequestLogConfig.from_env()
    with pytest.raises(ValueError, match="sample_rate"):
        RequestLogConfig(tmp_path, sample_rate=1.5)


# --- drift ------------------------------------------------------------------------------


def test_drift_is_low_on_the_same_data_and_high_on_a_scale_change(taxi, taxi_rows):
    train, window = taxi_rows.iloc[:10_000], taxi_rows.iloc[10_000:]
    profile = ReferenceProfile.fit(train, taxi)
    same = {d.feature: d for d in served_drift(profile, window, taxi)}
    assert same["fare"].score < 0.05 and not same["fare"].drifted
    assert same["payment_type"].measure == "l_infinity"
    scaled = window.assign(fare=window["fare"] * 10)
    moved = {d.feature: d for d in served_drift(profile, scaled, taxi)}
    assert moved["fare"].drifted and moved["fare"].triggers  # spec: fare retrain_drift 0.1
    assert not moved["trip_start_month"].triggers  # no spec threshold: shown, not acted on
    again = ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert served_drift(again, scaled, taxi) == served_drift(profile, scaled, taxi)


def test_js_divergence_bounds():
    p = np.array([0.5, 0.5, 0.0])
    assert js_divergence(p, p) == pytest.approx(0.0)
    assert js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


# --- delayed labels, quality and KPI ----------------------------------------------------


def _predictions(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 * y + rng.uniform(0, 0.5, n), 0, 1)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "row": 0,
            "version": np.where(np.arange(n) % 2, "taxi-classifier/1", "taxi-classifier/2"),
            "probability": p,
            "prediction": (p >= 0.5).astype(int),
            "payment_type": rng.choice(["Cash", "Credit Card"], n),
            "pickup_community_area": rng.integers(1, 5, n),
            "company": "A",
            "trip_miles": rng.uniform(0, 5, n),
            "trip_seconds": 600,
            "_y": y,
        }
    )


def test_labels_join_by_request_id_and_last_correction_wins(tmp_path):
    preds = _predictions(400)
    log = LabelLog(tmp_path / "labels.jsonl")
    log.append(
        {"request_id": r, "label": int(y)} for r, y in zip(preds.request_id, preds._y, strict=True)
    )
    log.append([{"request_id": "r0", "label": 1 - int(preds._y[0])}])  # a correction
    joined = join_labels(preds, log.frame())
    assert len(joined) == 400
    assert joined.set_index("request_id").loc["r0", "label"] == 1 - preds._y[0]
    with pytest.raises(ValueError, match=r"labels\[0\]"):
        log.append([{"request_id": "x", "label": 7}])


def test_performance_per_version_and_slice(taxi):
    df = _predictions(1000).rename(columns={"_y": "label"})
    table = performance_table(taxi, df)
    overall = {r.version: r.metrics for r in table if r.slice == "overall"}
    assert set(overall) == {"taxi-classifier/1", "taxi-classifier/2"}
    from sklearn.metrics import roc_auc_score

    part = df[df.version == "taxi-classifier/1"]
    assert overall["taxi-classifier/1"]["auc"] == pytest.approx(
        roc_auc_score(part.label, part.probability)
    )
    slices = {r.slice for r in table}
    assert "payment_type=Cash" in slices and "edge_zero_miles=no" in slices
    assert auc(np.array([1, 1]), np.array([0.2, 0.3])) != auc(np.array([1, 1]), np.array([0, 0]))


def test_kpis_of_both_use_cases(taxi, credit):
    taxi_rows = pd.DataFrame({"label": [1, 1, 1, 0], "prediction": [1, 0, 1, 1]})
    assert kpi_value(taxi, taxi_rows) == pytest.approx(2 / 3)  # big tippers anticipated
    credit_rows = pd.DataFrame(
        {"label": [1, 1, 0], "prediction": [0, 1, 1], "limit_bal": [100_000, 50_000, 20_000]}
    )
    assert kpi_value(credit, credit_rows) == pytest.approx(100_000 / 3)  # one missed default


def test_confidence():
    assert confidence([0.0, 1.0]) == 1.0 and confidence([0.5, 0.5]) == 0.0


def test_expected_loss_kpi_needs_an_exposure_column(tmp_path, repo_root):
    text = (repo_root / "usecases" / "credit.yaml").read_text()
    bad = tmp_path / "credit.yaml"
    bad.write_text(text.replace("exposure_column: limit_bal", "exposure_column: credit_line"))
    with pytest.raises(SpecError, match=r"kpi.exposure_column \(line \d+\).*credit_line"):
        load_spec(bad)
    bad.write_text(text.replace("  exposure_column: limit_bal", ""))
    with pytest.raises(SpecError, match="exposure_column"):
        load_spec(bad)


# --- triggers ---------------------------------------------------------------------------


def _drift(score: float, triggers: bool = True):
    from mlplatform.data.drift import FeatureDrift

    return [FeatureDrift("fare", "jensen_shannon", score, 0.3, triggers)]


def test_drift_trigger_needs_consecutive_windows_then_cools_down(tmp_path):
    policy = TriggerPolicy(drift_windows=2, cooldown_windows=2, new_labels=10**6)
    st = TriggerState()
    args = ("taxi", 500)
    assert evaluate_window(policy, st, args[0], "w1", args[1], _drift(0.6), 0.6, 0.6) == []
    fired = evaluate_window(policy, st, args[0], "w2", args[1], _drift(0.6), 0.6, 0.6)
    assert [t.reason for t in fired] == ["drift"] and "fare" in fired[0].message
    retrained(policy, st)
    # The streak restarts after a retraining; while cooling down a trigger is still raised
    # (detection stays visible) but held: it starts no retraining.
    assert evaluate_window(policy, st, args[0], "w3", args[1], _drift(0.6), 0.6, 0.6) == []
    held = evaluate_window(policy, st, args[0], "w4", args[1], _drift(0.6), 0.6, 0.6)
    assert [t.reason for t in held] == ["drift"] and held[0].held.startswith("cooldown")
    again = evaluate_window(policy, st, args[0], "w5", args[1], _drift(0.6), 0.6, 0.6)
    assert again and not again[0].held
    # A feature without a spec threshold never triggers, nor does a too-small window.
    st2 = TriggerState()
    quiet = TriggerPolicy(new_labels=10**6)
    assert evaluate_window(quiet, st2, "taxi", "w", 500, _drift(0.9, False), 0.6, 0.6) == []
    assert evaluate_window(quiet, st2, "taxi", "w", 10, _drift(0.9), 0.6, 0.6) == []
    log = TriggerLog(tmp_path / "t.jsonl")
    log.append(fired[0], retrained=True)
    assert log.read()[0]["reason"] == "drift" and log.read()[0]["retrained"] is True


def test_a_too_small_window_neither_extends_nor_breaks_a_drift_streak():
    policy = TriggerPolicy(drift_windows=2, min_rows=100, new_labels=10**6)
    st = TriggerState()
    assert evaluate_window(policy, st, "taxi", "w1", 500, _drift(0.6), 0.6, 0.6) == []
    assert evaluate_window(policy, st, "taxi", "w2", 10, [], None, 0.6) == []
    assert st.drifted_streak == 1
    fired = evaluate_window(policy, st, "taxi", "w3", 500, _drift(0.6), 0.6, 0.6)
    assert [t.reason for t in fired] == ["drift"]


def test_confidence_and_label_triggers():
    policy = TriggerPolicy(confidence_drop=0.25, new_labels=1000)
    st = TriggerState()
    fired = evaluate_window(policy, st, "taxi", "w", 500, [], 0.4, 0.6, new_labels=400)
    assert [t.reason for t in fired] == ["confidence"]
    fired = evaluate_window(policy, st, "taxi", "w", 500, [], 0.59, 0.6, new_labels=700)
    assert [t.reason for t in fired] == ["labels"] and fired[0].evidence["labels"] == 1100


def test_monitor_triggers_command_shows_evidence_and_outcome(tmp_path):
    from typer.testing import CliRunner

    from mlplatform.cli import app
    from mlplatform.monitoring.triggers import Trigger, trigger_log_path

    runner = CliRunner()
    empty = runner.invoke(app, ["monitor", "triggers", "--home", str(tmp_path)])
    assert empty.exit_code == 0 and "no triggers yet" in empty.output
    log = TriggerLog(trigger_log_path(tmp_path, "taxi"))
    log.append(
        Trigger("taxi", "2015-06", "drift", "fare drifted", {"features": ["fare"]}),
        retrained_version="3",
        canary="promoted",
    )
    out = runner.invoke(app, ["monitor", "triggers", "--home", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "2015-06" in out.output and "fare drifted" in out.output
    assert "retrained_version: 3" in out.output and "canary: promoted" in out.output
    js = runner.invoke(app, ["monitor", "triggers", "--home", str(tmp_path), "--json"])
    assert json.loads(js.output.splitlines()[0])["evidence"] == {"features": ["fare"]}


def test_a_log_read_in_chunks_gives_the_frame_of_one_read(tmp_path, monkeypatch):
    """Frames are built CHUNK_ROWS dicts at a time (a 1M-row log never holds 1M dicts); the
    result is the frame of one read, and `request_ids` keeps only the labelled requests."""
    from mlplatform.monitoring import windows

    log = RequestLog(RequestLogConfig(tmp_path, flush_rows=1000))
    for i in range(25):
        log.record(f"r{i}", "taxi", "taxi-classifier/1",
                   [{"fare": float(i), "company": f"c{i % 3}"}], [0.5], [1])
    log.close()
    whole = windows.read_log(tmp_path)
    monkeypatch.setattr(windows, "CHUNK_ROWS", 7)
    chunked = windows.read_log(tmp_path)
    pd.testing.assert_frame_equal(chunked, whole)
    picked = windows.read_log(tmp_path, request_ids=["r3", "r20", "nope"])
    assert picked["request_id"].tolist() == ["r3", "r20"]
    assert windows.read_log(tmp_path, request_ids=[]).empty
