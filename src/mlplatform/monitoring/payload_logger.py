"""A receiver for KServe's inference logger: CloudEvents in, the platform's request log out.

On a cluster the InferenceService's `spec.predictor.logger` (mode `all`) makes KServe's agent
post two CloudEvents per inference to this receiver: the request body
(`ce-type: org.kubeflow.serving.inference.request`) and, when the model answered 200, the
response body (`...inference.response`), both with the same `ce-id`. KServe sends them in binary
mode: the CloudEvents attributes travel as `ce-*` headers (`ce-specversion`, `ce-id`, `ce-type`,
`ce-source`, `ce-time`, and the extensions `ce-inferenceservicename`, `ce-namespace`,
`ce-component`, `ce-endpoint`, `ce-metadata`), the body is the inference payload as is, and
`Content-Type` is the client's. Structured mode (`application/cloudevents+json`) is accepted too.

The two halves are joined by id and written with `RequestLog.record`, so the rows are the ones
the model server writes with `--request-log` (request id, row, time, model, version, features,
probability, prediction) and `monitoring` reads both the same way. The join tolerates what an
HTTP sender does: halves in either order, a half sent twice (counted once), malformed events
(answered 4xx with `{"error": ...}`, nothing stored). A half whose partner never comes (KServe
sends no response event when the model failed) is kept for `ttl_s`, then written with the reason
to `unjoined-<pid>.jsonl` beside the log, as is everything pending when the receiver stops:
nothing received is dropped silently.

    python -m mlplatform.monitoring.payload_logger --log DIR --port 8090

Stdlib only: it runs in the serving environment (the serving image) as well as the pipeline one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mlplatform.monitoring.json_handler import JsonHandler
from mlplatform.monitoring.requestlog import RequestLog, RequestLogConfig

log = logging.getLogger("mlplatform.payload_logger")

CE_REQUEST = "org.kubeflow.serving.inference.request"
CE_RESPONSE = "org.kubeflow.serving.inference.response"
CE_TYPES = (CE_REQUEST, CE_RESPONSE)
STRUCTURED = "application/cloudevents+json"
MAX_BODY = 32 * 1024 * 1024  # a request of 10k rows (the contract's limit) fits with room
UNJOINED = "unjoined-{pid}.jsonl"
# The placeholder `--log` may carry: one log per InferenceService, as each use case has its own.
MODEL_PLACEHOLDER = "{model}"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class EventError(ValueError):
    """An event the receiver refuses; `status` is the HTTP code it answers (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Half:
    """One CloudEvent of an inference: its parsed payload and the attributes the join needs."""

    id: str
    type: str
    payload: dict
    raw: bytes
    time: float | None  # ce-time, seconds since the epoch
    isvc: str | None
    metadata: dict[str, list[str]] = field(default_factory=dict)
    received: float = field(default_factory=time.monotonic)


# --- parsing ---------------------------------------------------------------------------------


def parse_event(headers: Mapping[str, str], body: bytes) -> Half:
    """The event of one HTTP POST (binary or structured mode); EventError names what is wrong."""
    h = {k.lower(): v for k, v in headers.items()}
    ctype = h.get("content-type", "").split(";")[0].strip().lower()
    if ctype == STRUCTURED:
        attrs, data = _structured(body)
    else:
        attrs = {k[3:]: v for k, v in h.items() if k.startswith("ce-")}
        data = body
    missing = [a for a in ("specversion", "id", "type", "source") if not attrs.get(a)]
    if missing:
        raise EventError(
            f"not a CloudEvent: missing attribute(s) {missing} (binary mode sends them as "
            f"ce-* headers, e.g. ce-{missing[0]})"
        )
    if str(attrs["specversion"]) != "1.0":
        raise EventError(f"CloudEvents specversion {attrs['specversion']!r}: only 1.0 is read")
    if attrs["type"] not in CE_TYPES:
        raise EventError(
            f"event type {attrs['type']!r} is not one of KServe's inference logger "
            f"({' or '.join(CE_TYPES)})",
            status=422,
        )
    if not data:
        raise EventError(f"event {attrs['id']}: empty data (the inference payload)")
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"event {attrs['id']}: the data is not JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise EventError(f"event {attrs['id']}: the data must be a JSON object", status=422)
    half = Half(
        id=str(attrs["id"]),
        type=attrs["type"],
        payload=payload,
        raw=data if isinstance(data, bytes) else str(data).encode(),
        time=_event_time(attrs.get("time")),
        isvc=attrs.get("inferenceservicename") or None,
        metadata=_metadata(attrs.get("metadata")),
    )
    # Checked on arrival, so a bad half is refused now rather than found at the join.
    if half.type == CE_REQUEST:
        request_rows(payload)
    else:
        response_scores(payload)
    return half


def _structured(body: bytes) -> tuple[dict, bytes]:
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"structured CloudEvent is not JSON ({exc})") from exc
    if not isinstance(event, dict):
        raise EventError("a structured CloudEvent must be a JSON object")
    if "data_base64" in event:
        import base64

        try:
            data = base64.b64decode(event["data_base64"], validate=True)
        except ValueError as exc:
            raise EventError(f"data_base64 is not base64 ({exc})") from exc
    elif "data" in event:
        data = json.dumps(event["data"]).encode()
    else:
        data = b""
    return {k: v for k, v in event.items() if k not in ("data", "data_base64")}, data


def _event_time(value: str | None) -> float | None:
    """RFC 3339 (Go writes nanoseconds; Python reads up to microseconds)."""
    if not value:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise EventError(f"ce-time {value!r} is not an RFC 3339 time") from exc


def _metadata(value: str | None) -> dict[str, list[str]]:
    """The `metadataHeaders` KServe copied from the inference request (JSON name -> values)."""
    if not value:
        return {}
    try:
        meta = json.loads(value)
    except ValueError as exc:
        raise EventError(f"ce-metadata is not JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise EventError("ce-metadata must be a JSON object of header: [values]")
    return {str(k).lower(): v if isinstance(v, list) else [v] for k, v in meta.items()}


def request_rows(payload: dict) -> list[dict]:
    """The rows of an inference request: v1 `{"instances": [{field: value}]}` or v2 (Open
    Inference Protocol) `{"inputs": [{"name", "data"}]}`, one tensor per field."""
    inputs = payload.get("inputs")
    tensors = isinstance(inputs, list) and inputs and "instances" not in payload
    if tensors and all(isinstance(t, dict) and "name" in t and "data" in t for t in inputs):
        columns = {str(t["name"]): _flat(t["data"]) for t in inputs}
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) != 1:
            raise EventError(f"v2 request tensors differ in length: {lengths}", status=422)
        n = next(iter(lengths.values()))
        if n == 0:
            raise EventError("v2 request tensors are empty", status=422)
        return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    instances = payload.get("instances", inputs)
    if not isinstance(instances, list) or not instances:
        raise EventError(
            "request has no rows: expected v1 {'instances': [{field: value}, ...]} or v2 "
            "{'inputs': [{'name', 'data'}, ...]}",
            status=422,
        )
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise EventError(
                f"request instances[{i}] is not an object of field: value (the platform's "
                "contract; a bare list carries no feature names to log)",
                status=422,
            )
    return instances


def response_scores(payload: dict) -> tuple[list[float], list[int], str | None, str | None]:
    """(probabilities, predictions, model, version) of the platform server's answer: v1
    `{"predictions": [{"probability", "prediction"}], "model_version"}` or v2 outputs named
    `probability` and `prediction`."""
    if isinstance(payload.get("outputs"), list):
        outputs = {o.get("name"): o for o in payload["outputs"] if isinstance(o, dict)}
        if not {"probability", "prediction"} <= set(outputs):
            raise EventError(
                f"v2 response outputs {sorted(map(str, outputs))} lack 'probability' and "
                "'prediction' (the platform's model server answers both)",
                status=422,
            )
        prob = _flat(outputs["probability"].get("data", []))
        pred = _flat(outputs["prediction"].get("data", []))
        model, version = payload.get("model_name"), payload.get("model_version")
    elif isinstance(payload.get("predictions"), list):
        items = payload["predictions"]
        if not all(isinstance(p, dict) and "probability" in p for p in items):
            raise EventError(
                "v1 response predictions carry no 'probability' (the platform's model server "
                "answers [{'probability', 'prediction'}])",
                status=422,
            )
        prob = [p["probability"] for p in items]
        pred = [p.get("prediction", int(float(p["probability"]) >= 0.5)) for p in items]
        model, version = None, payload.get("model_version")
    else:
        raise EventError("response has neither v1 'predictions' nor v2 'outputs'", status=422)
    if len(prob) != len(pred) or not prob:
        raise EventError(
            f"response has {len(prob)} probabilities and {len(pred)} predictions", status=422
        )
    try:
        return [float(p) for p in prob], [int(c) for c in pred], model, version
    except (TypeError, ValueError) as exc:
        raise EventError(f"response scores are not numbers ({exc})", status=422) from exc


def _flat(data) -> list:
    out: list = []
    for v in data if isinstance(data, list) else [data]:
        out.extend(_flat(v) if isinstance(v, list) else [v])
    return out


# --- the join --------------------------------------------------------------------------------


class PayloadJoiner:
    """Joins request and response halves by event id and appends the joined rows to the log.

    Thread-safe. `seen` remembers the ids already logged (bounded, oldest forgotten first) so a
    half sent again after its inference was logged is recognised, not logged twice."""

    def __init__(
        self,
        log_dir: str | Path,
        *,
        ttl_s: float = 600.0,
        max_pending: int = 100_000,
        max_seen: int = 1_000_000,
        flush_s: float = 2.0,
    ) -> None:
        self.log_dir = str(log_dir)
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self.max_seen = max_seen
        self.flush_s = flush_s
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, dict[str, Half]] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._logs: dict[str, RequestLog] = {}
        self.counts: dict[str, int] = {
            "logged": 0,
            "pending": 0,
            "duplicate": 0,
            "rejected": 0,
            "unjoined": 0,
            "rows": 0,
        }

    def directory(self, model: str) -> Path:
        """The request-log folder of a model (`--log` with `{model}` filled in)."""
        if MODEL_PLACEHOLDER not in self.log_dir:
            return Path(self.log_dir)
        if not _SAFE_NAME.match(model):
            raise EventError(f"model name {model!r} cannot name a log folder", status=422)
        return Path(self.log_dir.replace(MODEL_PLACEHOLDER, model))

    def receive(self, headers: Mapping[str, str], body: bytes) -> dict:
        """Parse and take one HTTP POST; EventError (counted as rejected) when refused."""
        try:
            return self.add(parse_event(headers, body))
        except EventError:
            with self._lock:
                self.counts["rejected"] += 1
            raise

    def add(self, half: Half) -> dict:
        """Take one half; returns the answer body (status pending / logged / duplicate)."""
        with self._lock:
            if half.id in self._seen:
                self.counts["duplicate"] += 1
                return {"status": "duplicate", "id": half.id}
            halves = self._pending.get(half.id, {})
            if half.type in halves:
                if halves[half.type].raw != half.raw:
                    raise EventError(
                        f"event {half.id}: a different {half.type} with this id is already "
                        "waiting for its other half (ids must be unique per inference)",
                        status=409,
                    )
                self.counts["duplicate"] += 1
                return {"status": "duplicate", "id": half.id}
            other = halves.get(CE_RESPONSE if half.type == CE_REQUEST else CE_REQUEST)
            if other is None:
                if len(self._pending) >= self.max_pending:
                    self._spill_locked(next(iter(self._pending)), "pending limit reached")
                self._pending[half.id] = {half.type: half}
                self.counts["pending"] += 1
                return {"status": "pending", "id": half.id}
            req, resp = (half, other) if half.type == CE_REQUEST else (other, half)
            rows = self._write_locked(req, resp)  # raises (422) on a mismatched pair
            del self._pending[half.id]
            self.counts["pending"] -= 1
            self._remember_locked(half.id)
            self.counts["logged"] += 1
            self.counts["rows"] += rows
            return {"status": "logged", "id": half.id, "rows": rows}

    def _write_locked(self, req: Half, resp: Half) -> int:
        rows = request_rows(req.payload)
        prob, pred, model, version = response_scores(resp.payload)
        if len(rows) != len(prob):
            raise EventError(
                f"event {req.id}: the request has {len(rows)} rows but the response "
                f"{len(prob)} predictions; the waiting half is kept",
                status=422,
            )
        model = model or req.isvc or resp.isvc or "unknown"
        # The id labels join on, as the model server chooses it: the v2 request id, else the
        # client's x-request-id (KServe copies it when the InferenceService lists it in
        # logger.metadataHeaders), else the event id.
        v2_id = req.payload.get("id") if "instances" not in req.payload else None
        rid = v2_id or (req.metadata.get("x-request-id") or [None])[0] or req.id
        ts = req.time if req.time is not None else time.time()
        out = self._logs.get(model)
        if out is None:
            out = RequestLog(RequestLogConfig(self.directory(model), flush_s=self.flush_s))
            self._logs[model] = out
        out.record(
            str(rid), model, str(version or "unknown"), rows, prob, pred, ts=ts, sampled=True
        )
        return len(rows)

    def _remember_locked(self, event_id: str) -> None:
        self._seen[event_id] = None
        while len(self._seen) > self.max_seen:
            self._seen.popitem(last=False)

    def expire(self, now: float | None = None) -> int:
        """Write halves waiting longer than ttl_s to the unjoined file; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [
                i
                for i, halves in self._pending.items()
                if now - min(h.received for h in halves.values()) > self.ttl_s
            ]
            for i in old:
                self._spill_locked(i, f"no other half within {self.ttl_s:g} s")
            return len(old)

    def close(self) -> None:
        """Write every pending half to the unjoined file and flush the logs."""
        with self._lock:
            for i in list(self._pending):
                self._spill_locked(i, "receiver stopped before the other half came")
            for out in self._logs.values():
                out.close()

    def flush(self) -> None:
        with self._lock:
            for out in self._logs.values():
                out.flush()

    def _spill_locked(self, event_id: str, reason: str) -> None:
        halves = self._pending.pop(event_id)
        self.counts["pending"] -= 1
        self.counts["unjoined"] += 1
        first = next(iter(halves.values()))
        try:
            folder = self.directory(first.isvc or "unknown")
        except EventError:
            folder = Path(self.log_dir.replace(MODEL_PLACEHOLDER, "unknown"))
        folder.mkdir(parents=True, exist_ok=True)
        entry = {
            "id": event_id,
            "reason": reason,
            "at": time.time(),
            "halves": {
                t: {"time": h.time, "isvc": h.isvc, "metadata": h.metadata, "payload": h.payload}
                for t, h in halves.items()
            },
        }
        # Not a `requests-*` name: the monitoring readers skip it; people and tools read it.
        with open(folder / UNJOINED.format(pid=os.getpid()), "a") as fh:
            fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
        log.warning("event %s written unjoined: %s", event_id, reason)

    def metrics(self) -> str:
        """The counters in Prometheus text format."""
        with self._lock:
            c = dict(self.counts)
        lines = [
            "# HELP mlplatform_payload_events_total CloudEvents received, by outcome",
            "# TYPE mlplatform_payload_events_total counter",
        ]
        for outcome in ("logged", "duplicate", "rejected", "unjoined"):
            lines.append(f'mlplatform_payload_events_total{{outcome="{outcome}"}} {c[outcome]}')
        lines += [
            "# HELP mlplatform_payload_rows_logged_total Rows appended to the request log",
            "# TYPE mlplatform_payload_rows_logged_total counter",
            f"mlplatform_payload_rows_logged_total {c['rows']}",
            "# HELP mlplatform_payload_pending Inferences waiting for their other half",
            "# TYPE mlplatform_payload_pending gauge",
            f"mlplatform_payload_pending {c['pending']}",
        ]
        return "\n".join(lines) + "\n"


# --- HTTP ------------------------------------------------------------------------------------


def make_handler(joiner: PayloadJoiner) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to one joiner."""

    class Handler(JsonHandler):
        server_version = "mlplatform-payload-logger"
        request_log = log

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._json(400, {"error": "Content-Length is not a number"})
                return
            if length > MAX_BODY:
                self._json(413, {"error": f"event of {length} bytes; the limit is {MAX_BODY}"})
                self.close_connection = True
                return
            body = self.rfile.read(length) if length else b""
            try:
                answer = joiner.receive(dict(self.headers.items()), body)
            except EventError as exc:
                log.warning("refused event: %s", exc)
                self._json(exc.status, {"error": str(exc)})
                return
            self._json(200, answer)

        def do_GET(self) -> None:  # noqa: N802
            if self.path in ("/healthz", "/ready", "/-/ready"):
                self._json(200, {"status": "ok", **joiner.counts})
            elif self.path == "/metrics":
                self._send(200, joiner.metrics().encode(), "text/plain; version=0.0.4")
            else:
                self._json(404, {"error": f"GET {self.path}: try /healthz or /metrics"})

    return Handler


def serve(joiner: PayloadJoiner, host: str = "127.0.0.1", port: int = 8090) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) bound to host:port, answering with `joiner`."""
    return ThreadingHTTPServer((host, port), make_handler(joiner))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mlplatform.monitoring.payload_logger",
        description="Receive KServe inference-logger CloudEvents (spec.predictor.logger, mode "
        "all), join each request with its response by ce-id, and append the rows to the "
        "platform's request log (the format of the model server's --request-log).",
    )
    ap.add_argument(
        "--log",
        required=True,
        help="request-log folder; '{model}' in it is replaced by the InferenceService's name "
        "(e.g. /data/mlplatform/{model}/monitoring/requests)",
    )
    ap.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 in a pod)")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument(
        "--ttl-s",
        type=float,
        default=600.0,
        help="seconds a half waits for its other half before it goes to unjoined-<pid>.jsonl",
    )
    ap.add_argument("--flush-s", type=float, default=2.0, help="request-log flush interval")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    joiner = PayloadJoiner(args.log, ttl_s=args.ttl_s, flush_s=args.flush_s)
    try:
        httpd = serve(joiner, args.host, args.port)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _expire() -> None:
        while not stop.wait(max(0.5, min(args.ttl_s / 4, 30.0))):
            joiner.expire()

    threading.Thread(target=_expire, daemon=True).start()

    def _shutdown(signum, frame) -> None:
        # shutdown() waits for serve_forever to return: call it off the main thread.
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    log.info("listening on %s:%d, logging to %s", args.host, args.port, args.log)
    try:
        httpd.serve_forever()
    finally:
        stop.set()
        httpd.server_close()
        joiner.close()  # pending halves to the unjoined file, buffered rows to disk
        log.info("stopped: %s", joiner.counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
