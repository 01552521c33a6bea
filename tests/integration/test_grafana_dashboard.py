"""The Grafana dashboard (monitoring/grafana/mlplatform.json): built from the repository's
recording rules, and every panel's PromQL accepted by a real Prometheus (Debian's) that loads
those rules and scrapes the real monitoring exporter."""

from __future__ import annotations

import json
import shutil
import time

import pandas as pd
import pytest
import yaml

from mlplatform.data.drift import ReferenceProfile
from mlplatform.monitoring.drift import served_drift
from mlplatform.monitoring.exporter import MonitoringExporter
from mlplatform.monitoring.prometheus import (
    RULES_DIR,
    PrometheusError,
    PrometheusServer,
    ScrapeTargets,
    free_port,
)
from mlplatform.workspace import REPO_ROOT

from ..conftest import source_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed"),
]
DASHBOARD = REPO_ROOT / "monitoring" / "grafana" / "mlplatform.json"
# What Grafana substitutes before it sends a query: the `model` variable's "All" value.
VARIABLES = {"$model": ".*"}


def _targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def _expand(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr!r}"
    return expr


def test_the_dashboard_uses_every_recording_rule():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = " ".join(e for _, e in _targets())
    groups = yaml.safe_load((RULES_DIR / "serving.yml").read_text())["groups"]
    records = [r["record"] for g in groups for r in g["rules"] if "record" in r]
    assert records and [r for r in records if r not in exprs] == []


def test_every_panel_query_runs_on_a_real_prometheus(taxi):
    trips = pd.read_csv(source_of(taxi), nrows=4000)
    profile = ReferenceProfile.fit(trips.iloc[:3000], taxi, columns=["fare", "trip_miles"])
    scores = served_drift(profile, trips.iloc[3000:3300], taxi)
    exporter = MonitoringExporter()
    exporter.set_drift("taxi", scores)
    exporter.kpi.labels("taxi", "taxi-classifier/1", "positive_recall").set(0.7)
    port = free_port()
    server, _ = exporter.serve(port)
    try:
        targets = ScrapeTargets(monitoring=(f"127.0.0.1:{port}",))
        with PrometheusServer(targets, scrape_interval_s=0.5) as prom:
            prom.wait_for("mlplatform_feature_drift_score", timeout_s=30)
            time.sleep(1.0)  # a second scrape: rate() and increase() have two samples
            errors, answered = [], {}
            for title, expr in _targets():
                try:
                    answered[expr] = prom.query(_expand(expr))
                except PrometheusError as exc:
                    errors.append(f"{title}: {expr}: {exc}")
            assert errors == []
            drift = next(e for e in answered if e.startswith("mlplatform_feature_drift_score"))
            assert {r["metric"]["feature"] for r in answered[drift]} == {"fare", "trip_miles"}
            kpi = next(e for e in answered if e.startswith("mlplatform_business_kpi"))
            assert float(answered[kpi][0]["value"][1]) == 0.7
            # The check is not a no-op: a broken expression is reported.
            with pytest.raises(PrometheusError):
                prom.query("rate(mlplatform_requests_total[5m]")
    finally:
        server.shutdown()
