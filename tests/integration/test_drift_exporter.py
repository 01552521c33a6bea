"""The cluster's drift exporter on loopback: the metrics files two monitoring runs left behind,
served by `python -m mlplatform.monitoring.metrics_files` from the serving environment (what
the serving image runs), scraped by Debian's Prometheus with the repository's rules, fire
FeatureDrift for the drifted use case only."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request

import pandas as pd
import pytest

from mlplatform.data.drift import ReferenceProfile
from mlplatform.monitoring.drift import served_drift
from mlplatform.monitoring.exporter import metrics_file, write_window_metrics
from mlplatform.monitoring.prometheus import PrometheusServer, ScrapeTargets, free_port
from mlplatform.workspace import REPO_ROOT, Workspace

from ..conftest import source_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="`make setup` installs it"),
]
SERVING_PY = REPO_ROOT / ".venv-serving" / "bin" / "python"


def _write_run(home, taxi, model: str, factor: float) -> None:
    trips = pd.read_csv(source_of(taxi), nrows=4000)
    profile = ReferenceProfile.fit(trips.iloc[:3000], taxi, columns=["fare", "trip_miles"])
    window = trips.iloc[3000:3600].assign(fare=lambda d: d["fare"] * factor)
    perf = {f"{model}-classifier/1|overall": {"n": 600, "auc": 0.9, "kpi": 0.7, "accuracy": 0.8}}
    write_window_metrics(
        metrics_file(Workspace.locate(home, model).monitoring), model,
        served_drift(profile, window, taxi), 0.8, f"{model}-classifier/1", perf,
        "positive_recall", {"drift": 2},
    )


def test_files_of_every_use_case_are_served_merged_and_fire_feature_drift(taxi, tmp_path):
    if not SERVING_PY.exists():
        pytest.fail("the serving environment is missing: run `make setup`")
    home = tmp_path / "home"
    _write_run(home, taxi, "taxi", 10.0)  # fares ten times higher: drift
    _write_run(home, taxi, "taxi-eu", 1.0)  # the same traffic: no drift
    port = free_port()
    proc = subprocess.Popen(
        [str(SERVING_PY), "-m", "mlplatform.monitoring.metrics_files",
         "--glob", str(home / "*" / "monitoring" / "metrics.prom"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "the exporter did not answer in 30 s"
                time.sleep(0.2)
        # One declaration per family, however many files carry it (Prometheus refuses two).
        assert page.count("# TYPE mlplatform_feature_drift_score gauge") == 1
        assert 'model="taxi-eu"' in page and 'model="taxi"' in page
        assert "mlplatform_monitoring_file_age_seconds" in page
        targets = ScrapeTargets(monitoring=(f"127.0.0.1:{port}",))
        with PrometheusServer(targets, scrape_interval_s=0.5) as prom:
            deadline = time.monotonic() + 60
            while not (firing := [a for a in prom.alerts() if a["labels"]["alertname"]
                                  == "FeatureDrift" and a["state"] == "firing"]):
                assert time.monotonic() < deadline, prom.alerts()
                time.sleep(0.5)
            assert {(a["labels"]["model"], a["labels"]["feature"]) for a in firing} == {
                ("taxi", "fare")
            }
            triggers = prom.query_value('mlplatform_retraining_triggers_total{model="taxi"}')
            assert triggers == 2
    finally:
        proc.terminate()
        proc.wait(10)
