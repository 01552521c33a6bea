"""Alerts raised by the platform: always a log line, plus the sink the spec configures."""

from __future__ import annotations

import json
import logging
import urllib.request
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
    except Exception as exc:  # the quarantine itself already happened; don't lose it
        log.error("alert sink %s failed: %s", config.sink, exc)
    _count(kind)
    return event


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
