"""A local Alertmanager (the Debian `prometheus-alertmanager` binary) for `make monitor` and tests.

The routing lives in `monitoring/alertmanager/alertmanager.yml`, the same file the cluster's
ConfigMap is generated from: every alert goes to the platform's alert log (the `alert-log`
webhook, `mlplatform.monitoring.alert_log`), and the ones people act on also go to the team's
webhook. Its URLs are the cluster's; `local_config` points them at local processes and can
shorten the grouping delays for tests. `AlertmanagerServer` starts the binary on 127.0.0.1 like
`PrometheusServer` starts Prometheus, `amtool` checks configs and routes, and `post_alerts` is
the v2 API call the platform's own alerts use (`alerts.sink: alertmanager`).
Stdlib + PyYAML only, so it runs in both environments.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import yaml

from mlplatform.alerts import AlertmanagerError, post_alerts  # noqa: F401 - re-exported
from mlplatform.monitoring.prometheus import free_port, start_daemon, stop_daemon
from mlplatform.workspace import REPO_ROOT

CONFIG = REPO_ROOT / "monitoring" / "alertmanager" / "alertmanager.yml"
# The receivers' URLs in CONFIG. The alert log is a sidecar of the Alertmanager pod (loopback);
# the team webhook is a placeholder a cluster operator replaces with their own endpoint.
ALERT_LOG_URL = "http://127.0.0.1:9095/alertmanager"
TEAM_WEBHOOK_URL = "http://alert-webhook.mlplatform.svc.cluster.local:8080/alerts"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AlertmanagerError(
            f"`{name}` is not on PATH: install the Debian package prometheus-alertmanager "
            "(`make setup` does: apt-get install prometheus-alertmanager)"
        )
    return path


def local_config(
    alert_log_url: str,
    webhook_url: str,
    *,
    config: Path = CONFIG,
    group_wait: str | None = None,
    group_interval: str | None = None,
) -> dict:
    """The repository's config with its receiver URLs replaced (and, for tests, shorter
    grouping delays); the routes themselves are unchanged."""
    text = config.read_text()
    for cluster_url in (ALERT_LOG_URL, TEAM_WEBHOOK_URL):
        if cluster_url not in text:
            raise AlertmanagerError(f"{config} no longer names {cluster_url}: update {__name__}")
    text = text.replace(ALERT_LOG_URL, alert_log_url).replace(TEAM_WEBHOOK_URL, webhook_url)
    parsed = yaml.safe_load(text)
    for key, value in (("group_wait", group_wait), ("group_interval", group_interval)):
        if value is not None:
            parsed["route"][key] = value
            for sub in parsed["route"].get("routes", []):
                sub.pop(key, None)  # a route's own value would override the top one
    return parsed


def amtool(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    """Run `amtool` with `args`; the caller reads returncode and output."""
    return subprocess.run(
        [_binary("amtool"), *args], capture_output=True, text=True, timeout=timeout_s
    )


def check_config(path: Path) -> subprocess.CompletedProcess:
    """`amtool check-config` on a config file."""
    return amtool("check-config", str(path))


def routes_for(path: Path, labels: Mapping[str, str]) -> list[str]:
    """The receivers an alert with `labels` is routed to (`amtool config routes test`)."""
    out = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={path}",
        *(f"{k}={v}" for k, v in labels.items()),
    )
    if out.returncode not in (0, 1):  # 1: "does not match the expected receivers" (none given)
        raise AlertmanagerError(f"amtool config routes test failed: {out.stderr or out.stdout}")
    return [r.strip() for r in out.stdout.strip().split(",") if r.strip()]


class AlertmanagerServer:
    """One Alertmanager process on 127.0.0.1 (no HA cluster port); a context manager."""

    def __init__(self, config: Mapping, *, port: int | None = None, workdir: Path | None = None):
        self.config = dict(config)
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mlplatform-alertmanager-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """host:port, as Prometheus' alerting config names it."""
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "alertmanager.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "alertmanager.log"

    def start(self, timeout_s: float = 30.0) -> AlertmanagerServer:
        """Write and check the config, start Alertmanager, return once /-/ready answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        checked = check_config(self.config_path)
        if checked.returncode != 0:
            raise AlertmanagerError(f"amtool check-config refused the config:\n{checked.stdout}")
        cmd = [
            _binary("prometheus-alertmanager"),
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip port: one instance, nothing on 0.0.0.0
        ]
        self.proc = start_daemon(
            cmd, self.log_path, self.url + "/-/ready", timeout_s, "alertmanager",
            AlertmanagerError,
        )
        return self

    def stop(self) -> None:
        stop_daemon(self.proc)
        self.proc = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> AlertmanagerServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text()[-n:]
        except OSError:
            return "(no log)"

    def alerts(self) -> list[dict]:
        """The alerts Alertmanager holds (`GET /api/v2/alerts`)."""
        try:
            with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as resp:
                return json.loads(resp.read())
        except OSError as exc:
            raise AlertmanagerError(f"cannot reach alertmanager at {self.url}: {exc}") from exc
