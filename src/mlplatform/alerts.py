"""Alerts raised by the platform: always a log line, plus the sink the spec configures."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlplatform.data.catalogue import now_iso
from mlplatform.spec import Alerts

log = logging.getLogger("mlplatform.alerts")


def raise_alert(config: Alerts, workspace_root: Path, kind: str, message: str, **detail) -> dict:
    """Log the alert and deliver it; a failing sink is logged, never fatal to the caller."""
    event = {"at": now_iso(), "kind": kind, "message": message, **detail}
    log.error("ALERT %s: %s", kind, message)
    try:
        if config.sink == "file":
            path = Path(config.path)
            path = path if path.is_absolute() else workspace_root / path
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write(json.dumps(event) + "\n")
        elif config.sink == "webhook":
            req = urllib.request.Request(
                config.url,
                data=json.dumps(event).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
        elif config.sink == "alertmanager":
            post_alerts(config.url, [alertmanager_alert(event)])
    except Exception as exc:  # the quarantine itself already happened; don't lose it
        log.error("alert sink %s failed: %s", config.sink, exc)
    _count(kind)
    return event


class AlertmanagerError(RuntimeError):
    """Alertmanager could not start, refused a config, or an API call failed."""


def post_alerts(base_url: str, alerts: Sequence[Mapping], timeout_s: float = 5.0) -> None:
    """POST alerts to Alertmanager's v2 API (`/api/v2/alerts`): each a mapping with `labels`,
    `annotations` and optionally `startsAt` / `endsAt` / `generatorURL`."""
    url = base_url.rstrip("/") + "/api/v2/alerts"
    req = urllib.request.Request(
        url,
        data=json.dumps(list(alerts)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:  # 400: the body names the bad field
        raise AlertmanagerError(f"{url} answered {exc.code}: {exc.read()[:500]!r}") from exc
    except OSError as exc:
        raise AlertmanagerError(f"cannot reach alertmanager at {url}: {exc}") from exc


def alertmanager_alert(event: dict) -> dict:
    """A platform alert as an Alertmanager v2 alert: `alertname` is its kind, `source` is
    mlplatform (the route monitoring/alertmanager/alertmanager.yml sends to the team), `model`
    its use case, the message the summary and the rest of the event a JSON `detail`."""
    detail = {k: v for k, v in event.items() if k not in ("at", "kind", "message")}
    labels = {"alertname": event["kind"], "source": "mlplatform", "severity": "warning"}
    model = detail.get("usecase") or detail.get("model")
    if model:
        labels["model"] = str(model)
    return {
        "labels": labels,
        "annotations": {
            "summary": event["message"],
            "detail": json.dumps(detail, default=str)[:4000],  # Alertmanager keeps it in memory
        },
        "startsAt": event["at"],
    }


def _count(kind: str) -> None:
    try:
        from prometheus_client import Counter
    except ImportError:
        return
    global _COUNTER
    if _COUNTER is None:
        _COUNTER = Counter("mlplatform_alerts_total", "Alerts raised by the platform", ["kind"])
    _COUNTER.labels(kind=kind).inc()


_COUNTER = None
