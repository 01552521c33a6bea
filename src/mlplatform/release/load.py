"""A paced client load for demos and tests: `workers` threads with keep-alive connections,
each sending at its share of `rate` requests/s, recording every response code and upstream."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


class PacedLoad:
    """Use as a context manager; `codes` maps HTTP status (-1: no answer) to counts."""

    def __init__(
        self, url: str, path: str, body: dict, rate: float = 100, workers: int = 16
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, path
        self.body_dict, self.interval = body, workers / rate
        self.body = json.dumps(body).encode()
        self.started = self.stopped = self.decided = 0.0
        self.codes: Counter[int] = Counter()
        self.upstreams: Counter[str] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]
        self._lock = threading.Lock()

    def __enter__(self) -> PacedLoad:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        self.stopped = time.monotonic()

    def rate(self) -> float:
        """Achieved requests per second over the load's lifetime."""
        end = self.stopped or time.monotonic()
        return sum(self.codes.values()) / max(1e-9, end - self.started)

    def _run(self) -> None:
        conn, due = None, time.monotonic()
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            try:
                conn = conn or http.client.HTTPConnection(self.host, self.port, timeout=30)
                conn.request("POST", self.path, self.body, headers)
                resp = conn.getresponse()
                resp.read()
                code, upstream = resp.status, resp.getheader("x-mlplatform-upstream", "?")
            except (OSError, http.client.HTTPException):
                conn, code, upstream = None, -1, "none"  # a failure the client saw
            with self._lock:
                self.codes[code] += 1
                self.upstreams[upstream] += 1
            due += self.interval
            self._stop.wait(max(0.0, due - time.monotonic()))
