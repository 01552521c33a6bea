"""Prometheus (the Debian server) scraping a real model server and the monitoring exporter:
targets up, recording rules evaluated per version, instant and range queries, a drift alert
firing on trigger features only; and the server's request log joined with delayed labels."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

import pandas as pd
import pytest

from mlplatform.data.drift import ReferenceProfile
from mlplatform.monitoring.drift import served_drift
from mlplatform.monitoring.exporter import MonitoringExporter
from mlplatform.monitoring.performance import LabelLog, join_labels, performance_table
from mlplatform.monitoring.prometheus import PrometheusServer, ScrapeTargets, free_port
from mlplatform.monitoring.windows import read_log
from mlplatform.registry import models as reg
from mlplatform.release import local_stack as ls
from mlplatform.tracking import tracking_uri

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed"),
]
N_REQUESTS = 60


@pytest.fixture(scope="module")
def served(trained_taxi, tmp_path_factory):
    """A model server (serving env) with the request log on, and the rows it was sent."""
    import mlflow

    home = trained_taxi.own_home(tmp_path_factory, "monitor")
    run = trained_taxi.run
    version = reg.register(trained_taxi.spec, run.run_id, run.model_uri, {})
    reg.client().set_registered_model_alias("taxi-classifier", "champion", version)
    logdir = home / "requests"
    server = ls.model_server(
        "server",
        "taxi",
        "models:/taxi-classifier@champion",
        tracking_uri(home),
        home,
        extra_args=["--request-log", str(logdir)],
    )
    ls.wait_ready(server, ls.READY["model"])
    base, port = server.url, int(server.url.rsplit(":", 1)[1])
    ts = pd.read_parquet(trained_taxi.training_set)
    example = mlflow.pyfunc.load_model(run.model_uri).input_example
    cols = list(json.loads(example.to_json(orient="records"))[0])
    rows = ts.tail(N_REQUESTS).reset_index(drop=True)

    def send(prefix: str) -> None:
        for i, row in rows.iterrows():
            body = {"instances": [json.loads(row[cols].to_json())]}
            req = urllib.request.Request(
                f"{base}/v1/models/taxi:predict",
                json.dumps(body).encode(),
                {"Content-Type": "application/json", "x-request-id": f"{prefix}-{i}"},
            )
            urllib.request.urlopen(req, timeout=30).read()

    send("req")
    yield {
        "send": send,
        "base": base,
        "port": port,
        "version": version,
        "rows": rows,
        "logdir": logdir,
        "home": home,
        "training_set": ts,
    }
    ls.stop(server)  # a clean shutdown (terminate) flushes the request log's buffered tail


def test_prometheus_scrapes_servers_and_evaluates_rules(served, taxi):
    exporter = MonitoringExporter()
    exp_port = free_port()
    server, _ = exporter.serve(exp_port)
    try:
        targets = ScrapeTargets(
            model_servers=(f"127.0.0.1:{served['port']}",), monitoring=(f"127.0.0.1:{exp_port}",)
        )
        with PrometheusServer(targets, scrape_interval_s=0.5) as prom:
            prom.wait_for('up{job="model-servers"} == 1', timeout_s=30)
            # Every target up, once each has had its first scrape ("unknown" until then).
            deadline = time.monotonic() + 30
            while "unknown" in prom.targets_health().values() and time.monotonic() < deadline:
                time.sleep(0.25)
            assert set(prom.targets_health().values()) == {"up"}, prom.targets_health()
            version = f"taxi-classifier/{served['version']}"
            req = prom.wait_for(f'mlplatform_requests_total{{code="200",version="{version}"}}')
            assert float(req[0]["value"][1]) == N_REQUESTS
            served["send"]("prom")  # traffic while Prometheus watches: rates become defined
            prom.wait_for(f"mlplatform_requests_total > {N_REQUESTS}")
            time.sleep(1.5)  # one more scrape after the increase
            # Recording rules run on the real series (the rate needs two scrapes).
            mean = prom.wait_for("mlplatform:prediction_probability:mean_5m >= 0", timeout_s=30)
            assert mean[0]["metric"]["version"] == version
            assert 0.0 < float(mean[0]["value"][1]) < 1.0
            err = prom.wait_for("mlplatform:request_error_ratio:rate5m >= 0", timeout_s=30)
            assert float(err[0]["value"][1]) == 0.0
            now = time.time()
            series = prom.query_range('up{job="model-servers"}', now - 5, now, 0.5)
            assert len(series[0]["values"]) >= 5
            # A drift score over its threshold becomes a firing FeatureDrift alert.
            profile = ReferenceProfile.fit(served["training_set"], taxi)
            window = served["rows"].assign(fare=served["rows"]["fare"] * 10)
            scores = served_drift(profile, window, taxi)
            exporter.set_drift("taxi", scores)
            deadline = time.time() + 30
            while time.time() < deadline:
                firing = [a for a in prom.alerts() if a["labels"]["alertname"] == "FeatureDrift"]
                if firing:
                    break
                time.sleep(0.5)
            # Only features with a spec retrain_drift alert (ADR 0012), whatever the others
            # score: the exporter exports no threshold for them.
            expected = {d.feature for d in scores if d.triggers and d.drifted}
            assert "fare" in expected
            assert {a["labels"]["feature"] for a in firing} == expected
            assert prom.query_value('mlplatform_feature_drift_score{feature="fare"}') > 0.3
    finally:
        server.shutdown()


def test_request_log_joins_delayed_labels(served, taxi):
    deadline = time.time() + 10  # the periodic flush writes a quiet server's tail
    while len(read_log(served["logdir"])) < N_REQUESTS and time.time() < deadline:
        time.sleep(0.5)
    logged = read_log(served["logdir"])
    logged = logged[logged["request_id"].str.startswith("req-")].reset_index(drop=True)
    assert len(logged) == N_REQUESTS
    assert set(logged["request_id"]) == {f"req-{i}" for i in range(N_REQUESTS)}
    assert (logged["version"] == f"taxi-classifier/{served['version']}").all()
    labels = LabelLog(served["home"] / "labels.jsonl")
    labels.append(
        {"request_id": f"req-{i}", "label": int(y)}
        for i, y in enumerate(served["rows"][taxi.label])
    )
    joined = join_labels(logged, labels.frame())
    assert len(joined) == N_REQUESTS
    overall = [r for r in performance_table(taxi, joined) if r.slice == "overall"][0]
    assert overall.metrics["n"] == N_REQUESTS and 0 <= overall.metrics["accuracy"] <= 1
    # The logged features are what the model saw: the drift against training is small.
    profile = ReferenceProfile.fit(served["training_set"], taxi)
    fare = [d for d in served_drift(profile, logged, taxi) if d.feature == "fare"][0]
    assert fare.score < fare.threshold
