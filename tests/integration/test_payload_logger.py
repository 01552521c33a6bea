"""The KServe payload-logger receiver as a real process on loopback (serving environment).

Events are posted the way KServe's agent sends them (binary-mode CloudEvents: `ce-*` headers,
the inference body as data, one request and one response event per inference with the same
`ce-id`): halves out of order, sent twice, malformed. The log is then read with the monitoring
reader (`read_log`) and compared with what the model server's own request log holds for the
same traffic: the same rows, nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from mlplatform.monitoring.payload_logger import CE_REQUEST, CE_RESPONSE, UNJOINED
from mlplatform.monitoring.prometheus import free_port
from mlplatform.monitoring.requestlog import RequestLog, RequestLogConfig
from mlplatform.monitoring.windows import read_log
from mlplatform.workspace import REPO_ROOT

pytestmark = pytest.mark.integration

SERVING_PY = REPO_ROOT / ".venv-serving" / "bin" / "python"
VERSION = "taxi-classifier/3"
T0 = 1_700_000_000.0


class Receiver:
    """`python -m mlplatform.monitoring.payload_logger` started in the serving environment."""

    def __init__(self, log: Path, workdir: Path, ttl_s: float = 600.0) -> None:
        python = SERVING_PY if SERVING_PY.exists() else Path(sys.executable)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr = workdir / "receiver.log"
        cmd = [str(python), "-m", "mlplatform.monitoring.payload_logger", "--log", str(log)]
        cmd += ["--port", str(self.port), "--flush-s", "0.2", "--ttl-s", str(ttl_s)]
        with open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"receiver exited:\n{self.stderr.read_text()}"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return
            except OSError:
                assert time.monotonic() < deadline, self.stderr.read_text()
                time.sleep(0.1)

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + "/", body, headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def event(
        self,
        event_id: str,
        ce_type: str,
        payload: dict | bytes,
        *,
        at: float = T0,
        metadata: dict | None = None,
        **overrides: str,
    ) -> tuple[int, dict]:
        """One event as KServe's agent sends it (sdk-go, binary encoding)."""
        headers = {
            "Content-Type": "application/json",  # the client's, on both halves
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-type": ce_type,
            "ce-source": "http://localhost:9081/",
            "ce-time": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",
            "ce-inferenceservicename": "taxi",
            "ce-namespace": "mlplatform",
            "ce-component": "predictor",
            "ce-endpoint": "",
            "ce-metadata": json.dumps(metadata or {}),
        }
        headers.update({k.replace("_", "-"): v for k, v in overrides.items()})
        headers = {k: v for k, v in headers.items() if v is not None}
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.post(body, headers)

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return resp.read().decode()

    def stop(self) -> None:
        """SIGTERM: the receiver flushes its log and writes pending halves as unjoined."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        assert self.proc.returncode == 0, self.stderr.read_text()


def _rows(rng: random.Random, n: int) -> list[dict]:
    return [
        {
            "fare": round(rng.uniform(3, 60), 2),
            "trip_miles": round(rng.uniform(0, 20), 2),
            "payment_type": rng.choice(["Cash", "Credit Card"]),
            "trip_start_hour": rng.randrange(24),
        }
        for _ in range(n)
    ]


def _v1_response(prob: list[float]) -> dict:
    """The platform server's v1 answer (mlplatform.serving.model.PlatformModel.predict)."""
    preds = [{"probability": p, "prediction": int(p >= 0.5)} for p in prob]
    return {"predictions": preds, "model_version": VERSION}


def _v2(rows: list[dict], request_id: str) -> dict:
    return {
        "id": request_id,
        "inputs": [
            {"name": k, "shape": [len(rows)], "datatype": "FP64", "data": [r[k] for r in rows]}
            for k in rows[0]
        ],
    }


def _v2_response(prob: list[float], request_id: str) -> dict:
    return {
        "model_name": "taxi",
        "model_version": VERSION,
        "id": request_id,
        "outputs": [
            {"name": "probability", "shape": [len(prob)], "datatype": "FP64", "data": prob},
            {
                "name": "prediction",
                "shape": [len(prob)],
                "datatype": "INT64",
                "data": [int(p >= 0.5) for p in prob],
            },
        ],
    }


def test_halves_join_out_of_order_once_each_and_bad_events_get_4xx(tmp_path):
    rng = random.Random(7)
    receiver = Receiver(tmp_path / "{model}" / "requests", tmp_path)
    expected = RequestLog(RequestLogConfig(tmp_path / "server-log"))  # as the server writes
    halves = []  # (event id, type, payload, at, metadata)
    for i in range(30):
        rows = _rows(rng, 1 + i % 3)
        prob = [round(rng.random(), 6) for _ in rows]
        at = T0 + i
        if i % 3 == 0:  # v2: the request's own id is the key for labels
            rid, meta = f"v2-{i}", None
            req, resp = _v2(rows, rid), _v2_response(prob, rid)
        elif i % 3 == 1:  # v1 with x-request-id, copied by KServe (logger.metadataHeaders)
            rid, meta = f"client-{i}", {"X-Request-Id": [f"client-{i}"]}
            req, resp = {"instances": rows}, _v1_response(prob)
        else:  # v1 without one: the event id (the client's Ce-Id or KServe's uuid)
            rid, meta = f"ce-{i}", None
            req, resp = {"instances": rows}, _v1_response(prob)
        halves += [(f"ce-{i}", CE_REQUEST, req, at, meta), (f"ce-{i}", CE_RESPONSE, resp, at, meta)]
        expected.record(
            rid, "taxi", VERSION, rows, prob, [int(p >= 0.5) for p in prob], ts=at, sampled=True
        )
    expected.close()
    rng.shuffle(halves)  # responses before their requests, interleaved inferences
    dupes = rng.sample(halves, 10)  # sent again: some before, some after the join
    answers = []
    for event_id, ce_type, payload, at, meta in halves[:30] + dupes[:5] + halves[30:] + dupes[5:]:
        answers.append(receiver.event(event_id, ce_type, payload, at=at, metadata=meta))
    assert all(code == 200 for code, _ in answers), [a for a in answers if a[0] != 200]
    statuses = [body["status"] for _, body in answers]
    assert statuses.count("logged") == 30 and statuses.count("duplicate") == 10

    # Malformed: each refused with a 4xx that says why, nothing stored.
    good = {"instances": _rows(rng, 1)}
    bad = {
        "no ce-id": receiver.event("x", CE_REQUEST, good, ce_id=None),
        "specversion": receiver.event("x1", CE_REQUEST, good, ce_specversion="0.3"),
        "type": receiver.event("x2", "com.example.other", good),
        "not json": receiver.event("x3", CE_REQUEST, b"{instances: oops"),
        "empty": receiver.event("x4", CE_REQUEST, b""),
        "list rows": receiver.event("x5", CE_REQUEST, {"instances": [[1.0, 2.0]]}),
        "no probability": receiver.event("x6", CE_RESPONSE, {"predictions": [1, 0]}),
        "time": receiver.event("x7", CE_REQUEST, good, ce_time="yesterday"),
        "v2 lengths": receiver.event(
            "x8", CE_REQUEST, {"inputs": [{"name": "a", "data": [1]}, {"name": "b", "data": []}]}
        ),
    }
    for what, (code, body) in bad.items():
        assert 400 <= code < 500 and body.get("error"), (what, code, body)
    assert "ce-id" in bad["no ce-id"][1]["error"]
    assert "probability" in bad["no probability"][1]["error"]
    # A pair that does not fit (2 rows, 1 score): the response is refused, the request kept.
    assert receiver.event("pair", CE_REQUEST, {"instances": _rows(rng, 2)})[0] == 200
    code, body = receiver.event("pair", CE_RESPONSE, _v1_response([0.4]))
    assert code == 422 and "2 rows" in body["error"]
    # The same id reused for a different request while the first waits: a conflict.
    code, body = receiver.event("pair", CE_REQUEST, {"instances": _rows(rng, 1)})
    assert code == 409 and "already" in body["error"]
    # A request whose inference failed: KServe sends no response event.
    assert receiver.event("failed", CE_REQUEST, good)[0] == 200

    metrics = receiver.get("/metrics")
    assert 'mlplatform_payload_events_total{outcome="logged"} 30' in metrics
    assert 'mlplatform_payload_events_total{outcome="duplicate"} 10' in metrics
    assert f'mlplatform_payload_events_total{{outcome="rejected"}} {len(bad) + 2}' in metrics
    assert "mlplatform_payload_pending 2" in metrics
    receiver.stop()

    # The monitoring reader sees the receiver's log exactly as the server's.
    got = read_log(tmp_path / "taxi" / "requests")
    want = read_log(tmp_path / "server-log")
    assert len(got) == len(want) == sum(1 + i % 3 for i in range(30))
    assert not got.duplicated(["request_id", "row"]).any()
    key = ["request_id", "row"]
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True)[sorted(got.columns)],
        want.sort_values(key).reset_index(drop=True)[sorted(want.columns)],
        check_dtype=False,
    )
    assert set(got["version"]) == {VERSION} and set(got["model"]) == {"taxi"}
    # Nothing received is lost: the halves still waiting at shutdown are written, with why.
    (unjoined,) = (tmp_path / "taxi" / "requests").glob(UNJOINED.format(pid="*"))
    entries = {e["id"]: e for e in map(json.loads, unjoined.read_text().splitlines())}
    assert set(entries) == {"pair", "failed"}
    assert list(entries["failed"]["halves"]) == [CE_REQUEST]
    assert "stopped" in entries["failed"]["reason"]


def test_a_half_without_its_partner_goes_to_the_unjoined_file_after_the_ttl(tmp_path):
    receiver = Receiver(tmp_path / "log", tmp_path, ttl_s=1.0)
    try:
        rows = _rows(random.Random(1), 1)
        assert receiver.event("late", CE_RESPONSE, _v1_response([0.9]))[1]["status"] == "pending"
        deadline = time.monotonic() + 15
        while "mlplatform_payload_pending 0" not in receiver.get("/metrics"):
            assert time.monotonic() < deadline, receiver.get("/metrics")
            time.sleep(0.2)
        assert 'outcome="unjoined"} 1' in receiver.get("/metrics")
        # Its request arriving after the ttl waits afresh: it is not logged without a response.
        assert receiver.event("late", CE_REQUEST, {"instances": rows})[1]["status"] == "pending"
    finally:
        receiver.stop()
    lines = [json.loads(x) for f in (tmp_path / "log").glob("unjoined-*") for x in f.open()]
    assert [(e["id"], list(e["halves"])) for e in lines] == [
        ("late", [CE_RESPONSE]),
        ("late", [CE_REQUEST]),
    ]
    assert "within 1 s" in lines[0]["reason"]
    assert read_log(tmp_path / "log").empty


def test_structured_mode_and_help(tmp_path):
    receiver = Receiver(tmp_path / "log", tmp_path)
    try:
        rows = _rows(random.Random(2), 1)
        for ce_type, data in (
            (CE_REQUEST, {"instances": rows}),
            (CE_RESPONSE, _v1_response([0.2])),
        ):
            event = {
                "specversion": "1.0",
                "id": "s1",
                "type": ce_type,
                "source": "/t",
                "data": data,
            }
            code, body = receiver.post(
                json.dumps(event).encode(), {"Content-Type": "application/cloudevents+json"}
            )
            assert code == 200, body
        assert body == {"status": "logged", "id": "s1", "rows": 1}
    finally:
        receiver.stop()
    (row,) = read_log(tmp_path / "log").to_dict("records")
    assert row["request_id"] == "s1" and row["prediction"] == 0 and row["fare"] == rows[0]["fare"]
    out = subprocess.run(
        [sys.executable, "-m", "mlplatform.monitoring.payload_logger", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "--log" in out.stdout and "CloudEvents" in out.stdout


@pytest.mark.slow  # trains the shared taxi model and starts a model server (~60-90 s)
def test_the_receiver_logs_what_the_model_server_logs(trained_taxi, tmp_path_factory, tmp_path):
    """The same traffic through a real model server (its own --request-log on) and, as KServe's
    agent would forward it, its request and response bodies to the receiver: the monitoring
    reader gets the same rows from both logs (event time aside)."""
    import uuid

    import mlflow

    from mlplatform.registry import models as reg
    from mlplatform.release import local_stack as ls
    from mlplatform.tracking import tracking_uri

    home = trained_taxi.own_home(tmp_path_factory, "payload")
    run = trained_taxi.run
    version = reg.register(trained_taxi.spec, run.run_id, run.model_uri, {})
    reg.client().set_registered_model_alias("taxi-classifier", "champion", version)
    server = ls.model_server(
        "server",
        "taxi",
        "models:/taxi-classifier@champion",
        tracking_uri(home),
        home,
        extra_args=["--request-log", str(home / "server-log")],
    )
    receiver = Receiver(tmp_path / "{model}", tmp_path)
    try:
        ls.wait_ready(server, ls.READY["model"])
        example = mlflow.pyfunc.load_model(run.model_uri).input_example
        names = list(json.loads(example.to_json(orient="records"))[0])
        frame = pd.read_parquet(trained_taxi.training_set).tail(12)
        rows = json.loads(frame[names].to_json(orient="records"))
        sent = []
        for i in range(0, len(rows), 2):  # two rows per request: row numbers matter too
            rid = f"trip-{i}"
            if i % 4 == 0:
                path, body = "/v1/models/taxi:predict", {"instances": rows[i : i + 2]}
            else:
                path, body = "/v2/models/taxi/infer", _v2_typed(rows[i : i + 2], rid)
            raw = json.dumps(body).encode()
            req = urllib.request.Request(
                server.url + path, raw, {"Content-Type": "application/json", "x-request-id": rid}
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                sent.append((rid, raw, resp.read(), time.time()))
        for rid, raw, answer, at in reversed(sent):  # responses first, newest first
            meta = {"X-Request-Id": [rid]}
            event_id = str(uuid.uuid4())
            assert receiver.event(event_id, CE_RESPONSE, answer, at=at, metadata=meta)[0] == 200
            code, body = receiver.event(event_id, CE_REQUEST, raw, at=at, metadata=meta)
            assert (code, body["status"]) == (200, "logged"), body
    finally:
        ls.stop(server)  # terminate: the server flushes its log's tail
        receiver.stop()
    key = ["request_id", "row"]
    got = read_log(tmp_path / "taxi").sort_values(key).reset_index(drop=True)
    want = read_log(home / "server-log").sort_values(key).reset_index(drop=True)
    assert len(got) == len(want) == len(rows)
    assert set(got["version"]) == {f"taxi-classifier/{version}"}
    assert (got["ts"] - want["ts"]).abs().max() < 30  # event time vs prediction time
    columns = sorted(set(got.columns) - {"ts"})
    assert columns == sorted(set(want.columns) - {"ts"})
    pd.testing.assert_frame_equal(got[columns], want[columns], check_dtype=False)


def _v2_typed(rows: list[dict], request_id: str) -> dict:
    """An Open Inference Protocol body: BYTES for a text column, FP64 for the others."""
    inputs = []
    for name in rows[0]:
        data = [r[name] for r in rows]
        text = any(isinstance(v, str) for v in data)
        inputs.append(
            {
                "name": name,
                "shape": [len(rows)],
                "datatype": "BYTES" if text else "FP64",
                "data": data,
            }
        )
    return {"id": request_id, "inputs": inputs}
