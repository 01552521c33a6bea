"""Alerts delivered: Debian's Prometheus evaluates the repository's alert rules on the real
monitoring exporter's drift gauges and sends the firing FeatureDrift alert to Debian's
Alertmanager, which routes it (monitoring/alertmanager/alertmanager.yml, URLs pointed at local
processes) to a webhook sink started here and to the platform's alert log (the real
`mlplatform.monitoring.alert_log` process). The platform's own alerts (`alerts.sink:
alertmanager`) take the same route."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from mlplatform.alerts import raise_alert
from mlplatform.data.drift import ReferenceProfile
from mlplatform.monitoring import alertmanager as am
from mlplatform.monitoring.drift import served_drift
from mlplatform.monitoring.exporter import MonitoringExporter
from mlplatform.monitoring.prometheus import PrometheusServer, ScrapeTargets, free_port
from mlplatform.spec import Alerts

from ..conftest import source_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("prometheus-alertmanager") is None or shutil.which("prometheus") is None,
        reason="`make setup` installs the prometheus and prometheus-alertmanager packages",
    ),
]


class WebhookSink:
    """A stand-in for the team's webhook (a chat bridge, a pager): records what it is sent."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/alerts"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def alerts(self, alertname: str, status: str = "firing") -> list[dict]:
        return [
            a
            for n in self.received
            for a in n["alerts"]
            if a["labels"].get("alertname") == alertname and a["status"] == status
        ]

    def wait_for(self, alertname: str, timeout_s: float = 60.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while not (found := self.alerts(alertname)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {alertname} at the webhook; got {self.received}")
            time.sleep(0.25)
        return found


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    """Webhook sink + alert-log process + Alertmanager (1 s grouping) on loopback."""
    tmp = tmp_path_factory.mktemp("alertmanager")
    webhook = WebhookSink()
    log_port = free_port()
    log_path = tmp / "home" / "{model}" / "alerts.jsonl"
    with open(tmp / "alert_log.out", "w") as out:
        alert_log = subprocess.Popen(
            [sys.executable, "-m", "mlplatform.monitoring.alert_log", "--log", str(log_path)]
            + ["--port", str(log_port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{log_port}/healthz", timeout=2).read()
            break
        except OSError:
            assert alert_log.poll() is None and time.monotonic() < deadline, (
                tmp / "alert_log.out"
            ).read_text()
            time.sleep(0.1)
    config = am.local_config(
        f"http://127.0.0.1:{log_port}/alertmanager",
        webhook.url,
        group_wait="1s",
        group_interval="1s",
    )
    try:
        with am.AlertmanagerServer(config, workdir=tmp / "am") as server:
            yield {"am": server, "webhook": webhook, "home": tmp / "home"}
    finally:
        alert_log.terminate()
        alert_log.wait(10)
        webhook.httpd.shutdown()


def _alert_log(home: Path, model: str) -> list[dict]:
    path = home / model / "alerts.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _wait_for_log(home: Path, model: str, kind: str, timeout_s: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while not (found := [e for e in _alert_log(home, model) if e["kind"] == kind]):
        assert time.monotonic() < deadline, f"no {kind} in the alert log: {_alert_log(home, model)}"
        time.sleep(0.25)
    return found


def test_a_fired_drift_alert_reaches_the_webhook_and_the_alert_log(delivery, taxi):
    # Real drift scores: the taxi file's first trips against later ones with fare x10.
    trips = pd.read_csv(source_of(taxi), nrows=4000)
    profile = ReferenceProfile.fit(trips.iloc[:3000], taxi, columns=["fare", "trip_miles"])
    window = trips.iloc[3000:3300].assign(fare=lambda d: d["fare"] * 10)
    scores = served_drift(profile, window, taxi)
    assert {s.feature for s in scores if s.drifted and s.triggers} == {"fare"}
    exporter = MonitoringExporter()
    exp_port = free_port()
    exp_server, _ = exporter.serve(exp_port)
    try:
        exporter.set_drift("taxi", scores)
        targets = ScrapeTargets(monitoring=(f"127.0.0.1:{exp_port}",))
        with PrometheusServer(
            targets, scrape_interval_s=0.5, alertmanagers=[delivery["am"].address]
        ) as prom:
            found = delivery["webhook"].wait_for("FeatureDrift", timeout_s=60)
            assert {a["labels"]["feature"] for a in found} == {"fare"}
            alert = found[0]
            assert alert["labels"]["model"] == "taxi" and alert["labels"]["pillar"] == "data"
            assert "fare" in alert["annotations"]["summary"]
            assert f":{prom.port}/graph" in alert["generatorURL"]  # from this Prometheus
            held = [
                a for a in delivery["am"].alerts() if a["labels"]["alertname"] == "FeatureDrift"
            ]
            assert held and held[0]["receivers"][0]["name"] == "team"
            (logged,) = _wait_for_log(delivery["home"], "taxi", "FeatureDrift")
            assert logged["status"] == "firing" and logged["labels"]["feature"] == "fare"
            assert logged["source"] == "alertmanager" and "fare" in logged["message"]
            # Re-sent notifications (group_interval 1 s here) are written once.
            time.sleep(3)
            assert len(_wait_for_log(delivery["home"], "taxi", "FeatureDrift")) == 1
    finally:
        exp_server.shutdown()


def test_platform_alerts_take_the_same_route(delivery, tmp_path):
    config = Alerts(sink="alertmanager", url=delivery["am"].url)
    event = raise_alert(
        config,
        tmp_path,
        "retraining_triggered",
        "credit: retraining triggered (drift of limit_bal)",
        usecase="credit",
        reason="drift",
    )
    (alert,) = delivery["webhook"].wait_for("retraining_triggered")
    assert alert["labels"]["source"] == "mlplatform" and alert["labels"]["model"] == "credit"
    assert alert["annotations"]["summary"] == event["message"]
    assert json.loads(alert["annotations"]["detail"])["reason"] == "drift"
    (logged,) = _wait_for_log(delivery["home"], "credit", "retraining_triggered")
    assert logged["message"] == event["message"]
    assert not (tmp_path / "alerts.jsonl").exists()  # delivered by Alertmanager, not the file sink


def test_an_unreachable_alertmanager_is_logged_not_fatal(tmp_path, caplog):
    config = Alerts(sink="alertmanager", url=f"http://127.0.0.1:{free_port()}")
    event = raise_alert(config, tmp_path, "canary_rolled_back", "taxi: canary rolled back")
    assert event["kind"] == "canary_rolled_back"
    assert "alert sink alertmanager failed" in caplog.text and "cannot reach" in caplog.text
