"""The stdlib HTTP scaffolding the cluster's small receivers share (`payload_logger` and
`alert_log`): a request handler on keep-alive connections that answers JSON (or any bytes) with
its Content-Length and logs each request at debug level only.

Stdlib only: the receivers built on it run in the serving image.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler


class JsonHandler(BaseHTTPRequestHandler):
    """A receiver's handler: subclasses set `server_version`, `request_log` (their module's
    logger) and their do_* methods, and answer with `_json` or `_send`."""

    protocol_version = "HTTP/1.1"  # keep-alive: senders (KServe's agent, Alertmanager) reuse it
    request_log = logging.getLogger(__name__)

    def _json(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args) -> None:  # one line per request is too chatty
        self.request_log.debug(fmt, *args)
