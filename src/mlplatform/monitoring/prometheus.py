"""A local Prometheus server (the Debian `prometheus` binary) for `make monitor` and tests.

`PrometheusServer` writes a config whose scrape targets are the platform's processes (model
servers, router, drift exporter), loads the rule files kept in `monitoring/prometheus/rules/`,
starts Prometheus on 127.0.0.1 with a throw-away TSDB, waits for `/-/ready`, answers instant and
range queries through the HTTP API, and stops it. Stdlib + PyYAML only, so it runs in both envs.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlplatform.workspace import REPO_ROOT

RULES_DIR = REPO_ROOT / "monitoring" / "prometheus" / "rules"
# Job names the rules select on (`up{job="model-servers"}`): keep them in step with the rules.
JOB_MODEL_SERVERS = "model-servers"
JOB_ROUTER = "router"
JOB_MONITORING = "monitoring"


class PrometheusError(RuntimeError):
    """Prometheus could not start, or a query failed; the message says which and why."""


@dataclass(frozen=True)
class ScrapeTargets:
    """host:port addresses per job; an empty job is left out of the config."""

    model_servers: tuple[str, ...] = ()
    router: tuple[str, ...] = ()
    monitoring: tuple[str, ...] = ()  # the drift/performance exporter
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def jobs(self) -> dict[str, tuple[str, ...]]:
        jobs = {
            JOB_MODEL_SERVERS: self.model_servers,
            JOB_ROUTER: self.router,
            JOB_MONITORING: self.monitoring,
            **self.extra,
        }
        return {k: tuple(v) for k, v in jobs.items() if v}


def build_config(
    targets: ScrapeTargets,
    rule_files: Sequence[Path] = (),
    scrape_interval_s: float = 5.0,
    evaluation_interval_s: float | None = None,
    alertmanagers: Sequence[str] = (),
) -> dict:
    """The prometheus.yml content as a dict; `alertmanagers` (host:port) receive the alerts."""
    interval = _duration(scrape_interval_s)
    config = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval if scrape_interval_s < 10 else "10s",
            "evaluation_interval": _duration(evaluation_interval_s or scrape_interval_s),
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(addrs)}]}
            for job, addrs in targets.jobs().items()
        ],
    }
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [
                {"api_version": "v2", "static_configs": [{"targets": list(alertmanagers)}]}
            ]
        }
    return config


def rule_files(rules_dir: Path = RULES_DIR) -> list[Path]:
    return sorted(rules_dir.glob("*.yml"))


def _duration(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    if ms <= 0:
        raise ValueError(f"an interval must be positive, got {seconds} s")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise PrometheusError(
            "the `prometheus` binary is not on PATH: install the Debian package "
            "(`make setup` does: apt-get install prometheus)"
        )
    return path


class PrometheusServer:
    """One Prometheus process; use as a context manager or call `start` / `stop`."""

    def __init__(
        self,
        targets: ScrapeTargets,
        *,
        port: int | None = None,
        workdir: Path | None = None,
        rules: Sequence[Path] | None = None,
        scrape_interval_s: float = 5.0,
        retention: str = "2h",
        alertmanagers: Sequence[str] = (),
    ) -> None:
        self.targets = targets
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mlplatform-prometheus-"))
        self.rules = list(rule_files() if rules is None else rules)
        self.scrape_interval_s = scrape_interval_s
        self.retention = retention
        self.alertmanagers = tuple(alertmanagers)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = build_config(
            self.targets, self.rules, self.scrape_interval_s, alertmanagers=self.alertmanagers
        )
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.config_path

    def start(self, timeout_s: float = 30.0) -> PrometheusServer:
        """Write the config, start Prometheus and return once it answers /-/ready."""
        self.write_config()
        cmd = [
            prometheus_binary(),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",  # POST /-/reload after a config change
        ]
        self.proc = start_daemon(
            cmd, self.log_path, self.url + "/-/ready", timeout_s, "prometheus", PrometheusError
        )
        return self

    def stop(self) -> None:
        stop_daemon(self.proc)
        self.proc = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text()[-n:]
        except OSError:
            return "(no log)"

    # --- HTTP API ------------------------------------------------------------------------

    def _api(self, path: str, params: Mapping[str, str] | None = None) -> dict:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad expression, with its error
            body = json.loads(exc.read() or b"{}")
            raise PrometheusError(f"{path} {dict(params or {})}: {body.get('error', exc)}") from exc
        except OSError as exc:
            raise PrometheusError(f"cannot reach prometheus at {self.url}: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{path}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Instant query: a list of {"metric": labels, "value": [ts, "value"]}."""
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        return self._api("query", params)["result"]

    def query_value(self, expr: str) -> float | None:
        """The single value of an instant query (None when it returns nothing)."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict]:
        """Range query: a list of {"metric": labels, "values": [[ts, "value"], ...]}."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s}"}
        return self._api("query_range", params)["result"]

    def targets_health(self) -> dict[str, str]:
        """scrape URL -> health ("up", "down", "unknown") of every active target."""
        data = self._api("targets")
        return {t["scrapeUrl"]: t["health"] for t in data["activeTargets"]}

    def alerts(self) -> list[dict]:
        return self._api("alerts")["alerts"]

    def rule_groups(self) -> list[dict]:
        return self._api("rules")["groups"]

    def wait_for(self, expr: str, timeout_s: float = 30.0, poll_s: float = 0.5) -> list[dict]:
        """Poll an instant query until it returns something; raise with the last state if not."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"{expr!r} returned nothing within {timeout_s} s; targets: "
                    f"{self.targets_health()}"
                )
            time.sleep(poll_s)


def promtool_test(test_files: Sequence[Path]) -> subprocess.CompletedProcess:
    """Run `promtool test rules` on rule unit tests; the caller reads returncode and output."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise PrometheusError("`promtool` is not on PATH: install the Debian `prometheus` package")
    return subprocess.run(
        [promtool, "test", "rules", *map(str, test_files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_daemon(cmd: list[str], log_path: Path, ready_url: str, timeout_s: float, name: str,
                 error: type[Exception]) -> subprocess.Popen:
    """Start a server process logging to `log_path` and return once `ready_url` answers 200;
    `error` names it (with its log's end) when it exits or does not get ready in time."""
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise error(f"{name} exited at start:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    stop_daemon(proc)
    raise error(f"{name} not ready within {timeout_s} s:\n{_tail(log_path)}")


def stop_daemon(proc: subprocess.Popen | None) -> None:
    """Terminate, then kill what does not exit within 15 s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text()[-n:]
    except OSError:
        return "(no log)"
