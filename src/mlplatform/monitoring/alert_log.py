"""Alertmanager's webhook into the platform's alert log.

Alertmanager delivers notifications as JSON webhooks (`{"version": "4", "status", "receiver",
"alerts": [{"status", "labels", "annotations", "startsAt", "endsAt", "fingerprint"}]}`). This
sink appends each alert to the same JSON-lines log the platform's own alerts use with
`alerts.sink: file` (`{"at", "kind", "message", ...}`, `mlplatform.alerts`), so one file holds
what Prometheus rules and the platform raised. Alertmanager repeats a notification every
`repeat_interval` and on every group change: an alert is written once per (fingerprint, status,
startsAt), i.e. once when it fires and once when it resolves.

    python -m mlplatform.monitoring.alert_log --log /data/mlplatform/{model}/alerts.jsonl

`{model}` in `--log` becomes the alert's `model` (or `usecase`) label, `platform` without one.
Stdlib only: it runs beside Alertmanager in the serving image.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mlplatform.monitoring.json_handler import JsonHandler

log = logging.getLogger("mlplatform.alert_log")

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
NO_MODEL = "platform"
MAX_BODY = 8 * 1024 * 1024


class NotificationError(ValueError):
    """A body that is not an Alertmanager webhook notification; answered 400."""


class AlertLog:
    """Appends Alertmanager notifications to the alert log, each alert state once."""

    def __init__(self, path: str | Path, max_seen: int = 100_000) -> None:
        self.path = str(path)
        self.max_seen = max_seen
        self._seen: OrderedDict[tuple, None] = OrderedDict()
        self._lock = threading.Lock()
        self.written = 0

    def file_for(self, labels: dict) -> Path:
        """The log file of an alert (`{model}` filled in from its labels)."""
        model = str(labels.get("model") or labels.get("usecase") or NO_MODEL)
        if not _SAFE_NAME.match(model):
            model = NO_MODEL  # a label is not trusted to name a folder
        return Path(self.path.replace("{model}", model))

    def take(self, notification: object) -> int:
        """Write the notification's new alert states; returns how many were written."""
        if not isinstance(notification, dict) or not isinstance(notification.get("alerts"), list):
            raise NotificationError("not an Alertmanager notification: no 'alerts' list")
        entries = []
        for i, alert in enumerate(notification["alerts"]):
            if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
                raise NotificationError(f"alerts[{i}] has no 'labels' object")
            entries.append(_entry(alert, notification.get("receiver")))
        written = 0
        with self._lock:
            for labels, entry in entries:
                key = (entry["fingerprint"], entry["status"], entry["starts_at"])
                if key in self._seen:
                    continue
                self._seen[key] = None
                while len(self._seen) > self.max_seen:
                    self._seen.popitem(last=False)
                path = self.file_for(labels)
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a") as fh:
                    fh.write(json.dumps(entry) + "\n")
                written += 1
            self.written += written
        return written


def _entry(alert: dict, receiver: str | None) -> tuple[dict, dict]:
    labels = {str(k): str(v) for k, v in alert["labels"].items()}
    annotations = alert.get("annotations") or {}
    name = labels.get("alertname", "unnamed")
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": name,
        "message": annotations.get("summary") or annotations.get("description") or name,
        "status": alert.get("status", "firing"),
        "source": "alertmanager",
        "receiver": receiver,
        "labels": labels,
        "annotations": annotations,
        "starts_at": alert.get("startsAt"),
        "ends_at": alert.get("endsAt"),
        # Alertmanager's own identity of an alert (its label set); computed when absent.
        "fingerprint": alert.get("fingerprint") or json.dumps(labels, sort_keys=True),
    }
    return labels, entry


def make_handler(sink: AlertLog) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to one alert log."""

    class Handler(JsonHandler):
        server_version = "mlplatform-alert-log"
        request_log = log

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise NotificationError(f"{length} bytes; the limit is {MAX_BODY}")
                body = json.loads(self.rfile.read(length) or b"null")
                self._json(200, {"written": sink.take(body)})
            except (NotificationError, ValueError) as exc:
                log.warning("refused notification: %s", exc)
                self._json(400, {"error": str(exc)})

        def do_GET(self) -> None:  # noqa: N802
            if self.path in ("/healthz", "/-/ready"):
                self._json(200, {"status": "ok", "written": sink.written})
            else:
                self._json(404, {"error": f"GET {self.path}: POST notifications, GET /healthz"})

    return Handler


def serve(sink: AlertLog, host: str = "127.0.0.1", port: int = 9095) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for Alertmanager's webhook notifications."""
    return ThreadingHTTPServer((host, port), make_handler(sink))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mlplatform.monitoring.alert_log",
        description="Receive Alertmanager webhook notifications and append each alert (once "
        "when it fires, once when it resolves) to the platform's alert log.",
    )
    ap.add_argument(
        "--log",
        required=True,
        help="alert log (JSON lines); '{model}' is replaced by the alert's model label "
        "(e.g. /data/mlplatform/{model}/alerts.jsonl)",
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9095)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        httpd = serve(AlertLog(args.log), args.host, args.port)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2

    def _shutdown(signum, frame) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    log.info("listening on %s:%d, writing %s", args.host, args.port, args.log)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
