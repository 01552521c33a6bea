"""The Alertmanager config (monitoring/alertmanager/alertmanager.yml) checked with Debian's
`amtool`: it parses, every alert rule of monitoring/prometheus/rules/alerts.yml and the
platform's own alerts route to the receivers intended, and every receiver writes the alert log.
Also the Prometheus config's alerting section (`promtool check config`) and the mapping of the
platform's alerts onto Alertmanager's v2 alerts."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from mlplatform.alerts import alertmanager_alert
from mlplatform.monitoring import alertmanager as am
from mlplatform.monitoring.prometheus import RULES_DIR, ScrapeTargets, build_config
from mlplatform.spec import Alerts

pytestmark = pytest.mark.skipif(
    shutil.which("amtool") is None,
    reason="amtool missing: `make setup` installs the prometheus-alertmanager Debian package",
)


def _rules() -> list[dict]:
    groups = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def test_the_repository_config_passes_amtool_check_config():
    out = am.check_config(am.CONFIG)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_the_check_is_not_a_no_op(tmp_path):
    config = yaml.safe_load(am.CONFIG.read_text())
    config["route"]["receiver"] = "nobody"  # a receiver that does not exist
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(config))
    out = am.check_config(path)
    assert out.returncode != 0 and "nobody" in out.stdout + out.stderr


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["alert"])
def test_every_alert_rule_routes_where_intended(rule):
    labels = {"alertname": rule["alert"], "model": "taxi", **rule["labels"]}
    receivers = am.routes_for(am.CONFIG, labels)
    acted_on = labels["severity"] == "page" or labels["pillar"] in ("data", "model", "business")
    assert receivers == (["team"] if acted_on else ["alert-log"]), (rule["alert"], receivers)


@pytest.mark.parametrize(
    "kind", ["batch_quarantined", "retraining_triggered", "canary_rolled_back"]
)
def test_platform_alerts_route_to_the_team(kind):
    event = {"at": "2026-12-06T03:00:00+00:00", "kind": kind, "message": "m", "usecase": "taxi"}
    alert = alertmanager_alert(event)
    assert am.routes_for(am.CONFIG, alert["labels"]) == ["team"]


def test_every_receiver_writes_the_alert_log():
    config = yaml.safe_load(am.CONFIG.read_text())
    for receiver in config["receivers"]:
        urls = [w["url"] for w in receiver["webhook_configs"]]
        assert am.ALERT_LOG_URL in urls, receiver["name"]
        assert all(w["send_resolved"] for w in receiver["webhook_configs"])


def test_local_config_points_the_receivers_at_local_processes(tmp_path):
    config = am.local_config(
        "http://127.0.0.1:1/log", "http://127.0.0.1:2/hook", group_wait="1s", group_interval="1s"
    )
    text = yaml.safe_dump(config)
    assert am.ALERT_LOG_URL not in text and am.TEAM_WEBHOOK_URL not in text
    assert config["route"]["group_wait"] == "1s"
    path = tmp_path / "local.yml"
    path.write_text(text)
    assert am.check_config(path).returncode == 0
    assert am.routes_for(path, {"alertname": "FeatureDrift", "pillar": "data"}) == ["team"]


def test_prometheus_config_with_alertmanager_passes_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: `make setup` installs the prometheus Debian package")
    config = build_config(
        ScrapeTargets(monitoring=("127.0.0.1:9100",)), alertmanagers=["127.0.0.1:9093"]
    )
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:9093"
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "alerting" not in build_config(ScrapeTargets(monitoring=("127.0.0.1:9100",)))


def test_platform_alert_as_an_alertmanager_alert():
    event = {
        "at": "2026-12-06T03:00:00+00:00",
        "kind": "batch_quarantined",
        "message": "taxi: batch 1a2b quarantined",
        "usecase": "taxi",
        "batch_id": "1a2b",
    }
    alert = alertmanager_alert(event)
    assert alert["labels"] == {
        "alertname": "batch_quarantined",
        "source": "mlplatform",
        "severity": "warning",
        "model": "taxi",
    }
    assert alert["annotations"]["summary"] == event["message"]
    assert '"batch_id": "1a2b"' in alert["annotations"]["detail"]
    assert alert["startsAt"] == event["at"]


def test_the_alertmanager_sink_needs_a_url():
    with pytest.raises(ValueError, match="'alertmanager' needs a `url`"):
        Alerts(sink="alertmanager")
    assert Alerts(sink="alertmanager", url="http://127.0.0.1:9093").url
