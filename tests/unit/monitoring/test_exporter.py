"""The monitoring exporter: drift scores for every feature, thresholds only for the features that
may trigger a retraining, so the `FeatureDrift` alert cannot fire on a calendar feature.

The last test feeds the exporter's own exposition of a real window to `promtool test rules`
with the repository's alert rules: only the spec's trigger features may alert."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlplatform.data.drift import FeatureDrift, ReferenceProfile
from mlplatform.monitoring.drift import served_drift
from mlplatform.monitoring.exporter import MonitoringExporter
from mlplatform.monitoring.prometheus import promtool_test, rule_files


@pytest.fixture(scope="module")
def scaled_window_scores(taxi, shared_data):
    """Scores of one calendar month with fare x10 against 10k rows of every month: as in a
    monthly monitoring window, the month feature is far from training by construction."""
    rows = pd.read_csv(shared_data / "chicago_taxi" / "data.csv")
    profile = ReferenceProfile.fit(rows.iloc[:10_000], taxi)
    rest = rows.iloc[10_000:]
    window = rest[rest["trip_start_month"] == 6]
    return served_drift(profile, window.assign(fare=window["fare"] * 10), taxi)


def _samples(exporter: MonitoringExporter, name: str) -> dict[str, float]:
    text = generate_latest(exporter.registry).decode()
    return {
        s.labels["feature"]: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name
    }


def test_thresholds_only_for_features_that_trigger(taxi, scaled_window_scores):
    exporter = MonitoringExporter()
    exporter.set_drift("taxi", scaled_window_scores)
    scores = _samples(exporter, "mlplatform_feature_drift_score")
    thresholds = _samples(exporter, "mlplatform_feature_drift_threshold")
    assert set(scores) == {d.feature for d in scaled_window_scores}  # every feature is shown
    spec_triggers = set(taxi.retrain_features())
    assert set(thresholds) == spec_triggers & set(scores) and "fare" in thresholds
    assert thresholds["fare"] == taxi.column("fare").retrain_drift  # n large: spec's
    # The calendar feature is over the default threshold, yet exports no threshold.
    month = next(d for d in scaled_window_scores if d.feature == "trip_start_month")
    assert month.drifted and not month.triggers
    assert "trip_start_month" in scores and "trip_start_month" not in thresholds


def test_a_feature_that_stops_triggering_loses_its_threshold():
    exporter = MonitoringExporter()
    exporter.set_drift("taxi", [FeatureDrift("fare", "jensen_shannon", 0.5, 0.3, True)])
    assert _samples(exporter, "mlplatform_feature_drift_threshold") == {"fare": 0.3}
    exporter.set_drift("taxi", [FeatureDrift("fare", "jensen_shannon", 0.5, 0.2, False)])
    assert _samples(exporter, "mlplatform_feature_drift_threshold") == {}
    assert _samples(exporter, "mlplatform_feature_drift_score") == {"fare": 0.5}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing")
def test_feature_drift_alert_fires_only_on_trigger_features(tmp_path, scaled_window_scores):
    exporter = MonitoringExporter()
    exporter.set_drift("taxi", scaled_window_scores)
    text = generate_latest(exporter.registry).decode()
    series = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("mlplatform_feature_drift_"):
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                series.append({"series": f"{s.name}{{{labels}}}", "values": f"{s.value}x5"})
    drifted = {d.feature: d.score for d in scaled_window_scores if d.triggers and d.drifted}
    assert list(drifted) == ["fare"]
    test = {
        "rule_files": [str(f) for f in rule_files()],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "alertname": "FeatureDrift",
                        "eval_time": "2m",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "pillar": "data",
                                    "model": "taxi",
                                    "feature": f,
                                    "comparator": "skew",
                                },
                                # Prometheus prints $value in Go's shortest form, as repr does.
                                "exp_annotations": {
                                    "summary": f"taxi: {f} skew {score!r} over its threshold"
                                },
                            }
                            for f, score in drifted.items()
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "exporter_test.yml"
    path.write_text(yaml.safe_dump(test))
    out = promtool_test([path])
    assert out.returncode == 0, out.stdout + out.stderr
