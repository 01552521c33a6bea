"""The KServe-protocol model server, run in the serving environment against a registered model:
v1 and v2 predictions, 4xx naming the field, health, /metrics labelled by version, no 5xx."""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.error
import urllib.request

import pytest

from mlplatform.registry import models as reg
from mlplatform.release import local_stack as ls
from mlplatform.tracking import tracking_uri

pytestmark = pytest.mark.integration
_TRACKING: dict[str, str] = {}  # the server fixture's registry, for a second server on it


@pytest.fixture(scope="module")
def server(trained_taxi, tmp_path_factory):
    home = trained_taxi.own_home(tmp_path_factory, "serve")
    _TRACKING["uri"] = tracking_uri(home)
    out = trained_taxi.run
    version = reg.register(
        trained_taxi.spec,
        out.run_id,
        out.model_uri,
        {"family": "logistic", "selection_quality": "0.9"},
    )
    reg.client().set_registered_model_alias("taxi-classifier", "champion", version)
    p = ls.model_server(
        "server", "taxi", "models:/taxi-classifier@champion", tracking_uri(home), home
    )
    try:
        ls.wait_ready(p, ls.READY["model"])
        import mlflow

        example = mlflow.pyfunc.load_model(out.model_uri).input_example
        rows = json.loads(example.to_json(orient="records"))
        yield p.url, version, rows, p.proc
    finally:
        ls.stop(p)


def _post(url: str, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_v1_predict(server):
    base, version, rows, _ = server
    code, body = _post(f"{base}/v1/models/taxi:predict", {"instances": rows})
    assert code == 200 and len(body["predictions"]) == len(rows)
    assert body["model_version"] == f"taxi-classifier/{version}"
    assert all(0 <= p["probability"] <= 1 for p in body["predictions"])


def test_ints_for_doubles_are_accepted(server):
    base, _, rows, _ = server
    row = dict(rows[0], fare=600, trip_miles=3)  # a user sends 600, not 600.0
    code, _ = _post(f"{base}/v1/models/taxi:predict", {"instances": [row]})
    assert code == 200


def test_v2_infer(server):
    base, _, rows, _ = server
    inputs = []
    for name in rows[0]:
        values = [r[name] for r in rows]
        dtype = "BYTES" if any(isinstance(v, str) for v in values) else "FP64"
        inputs.append({"name": name, "shape": [len(rows)], "datatype": dtype, "data": values})
    code, body = _post(f"{base}/v2/models/taxi/infer", {"id": "r1", "inputs": inputs})
    assert code == 200, body
    outputs = {o["name"]: o for o in body["outputs"]}
    assert len(outputs["probability"]["data"]) == len(rows) and body["id"] == "r1"


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: dict(r, fare="twelve"), "fare"),
        (lambda r: {k: v for k, v in r.items() if k != "payment_type"}, "payment_type"),
        (lambda r: dict(r, tips=3.0), "tips"),
    ],
)
def test_bad_input_is_4xx_naming_the_field(server, mutate, needle):
    base, _, rows, _ = server
    code, body = _post(f"{base}/v1/models/taxi:predict", {"instances": [mutate(rows[0])]})
    assert code == 400 and needle in body["error"]


def test_garbage_never_gets_a_5xx(server):
    base, _, rows, proc = server
    rng = random.Random(5)
    atoms = [None, 0, -1, 1e308, "x", "", [], {}, True, "Cash", 3.5]
    for _ in range(150):
        kind = rng.random()
        if kind < 0.2:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
        elif kind < 0.6:
            row = {k: rng.choice(atoms) if rng.random() < 0.3 else v for k, v in rows[0].items()}
            body = {"instances": [row]}
        else:
            body = rng.choice([{"instances": rng.choice(atoms)}, rng.choice(atoms), {"x": 1}])
        code, _ = _post(f"{base}/v1/models/taxi:predict", body)
        assert code < 500, body
    assert proc.poll() is None


def test_metrics_are_labelled_by_version(server):
    base, version, rows, _ = server
    _post(f"{base}/v1/models/taxi:predict", {"instances": rows})
    text = urllib.request.urlopen(f"{base}/metrics").read().decode()
    label = f'version="taxi-classifier/{version}"'
    for metric in (
        "mlplatform_requests_total",
        "mlplatform_request_latency_seconds_bucket",
        "mlplatform_prediction_probability_bucket",
        "mlplatform_invalid_requests_total",
    ):
        assert any(line.startswith(metric) and label in line for line in text.splitlines()), metric
    assert 'code="400"' in text and 'code="200"' in text


def test_served_predictions_match_the_artifact_through_mlflow(server, trained_taxi):
    # The server calls the packaged model below MLflow's input enforcement (ADR 0019): what a
    # client gets must be exactly what mlflow.pyfunc gives for the same rows.
    import mlflow
    import pandas as pd

    base, _, rows, _ = server
    code, body = _post(f"{base}/v1/models/taxi:predict", {"instances": rows})
    assert code == 200
    expected = mlflow.pyfunc.load_model(trained_taxi.run.model_uri).predict(pd.DataFrame(rows))
    assert [p["probability"] for p in body["predictions"]] == expected["probability"].tolist()
    assert [p["prediction"] for p in body["predictions"]] == expected["prediction"].tolist()


def test_a_model_this_server_scores_differently_is_refused(server, trained_taxi, tmp_path):
    """The artifact carries rows scored at packaging; a server whose code scores them
    differently (here: a fitted mean changed behind the reference's back) must not serve."""
    folder = trained_taxi.skewed_model(tmp_path / "model")
    p = ls.model_server("skewed", "taxi", str(folder), _TRACKING["uri"], tmp_path)
    try:
        with pytest.raises(ls.StackError) as err:
            ls.wait_ready(p, ls.READY["model"])
    finally:
        ls.stop(p)
    assert p.proc.returncode == 2
    assert "scores the artifact's reference rows differently" in str(err.value)
    assert "requirements.txt" in str(err.value)


def test_workers_share_the_port_the_metrics_and_the_request_log(server, tmp_path):
    base, version, rows, _ = server
    logs = tmp_path / "requests"
    p = ls.model_server(
        "workers",
        "taxi",
        f"models:/taxi-classifier/{version}",
        _TRACKING["uri"],
        tmp_path,
        extra_args=["--workers", "2", "--request-log", str(logs)],
    )
    try:
        ls.wait_ready(p, ls.READY["model"])
        with open(f"/proc/{p.proc.pid}/task/{p.proc.pid}/children") as fh:
            workers = [int(x) for x in fh.read().split()]
        assert len(workers) == 2
        # Each request on a new connection: the kernel spreads connections over the workers
        # once the second has loaded its copy of the model. Each worker logs to its own files.
        sent, deadline = 0, time.monotonic() + 120
        while time.monotonic() < deadline and not (
            sent >= 40 and _logging_pids(logs) == set(workers)
        ):
            code, _ = _post(f"{p.url}/v1/models/taxi:predict", {"instances": rows[:1]})
            assert code == 200
            sent += 1
            if sent >= 40:
                time.sleep(0.2)  # the logs flush on a timer
        assert _logging_pids(logs) == set(workers)
        # Every scrape, whichever worker answers it, counts the requests of both.
        for _ in range(6):
            text = urllib.request.urlopen(f"{p.url}/metrics").read().decode()
            assert _requests_200(text, version) == sent
        # A worker that dies is replaced while the other keeps answering, and counted.
        os.kill(workers[0], signal.SIGKILL)
        for _ in range(20):
            code, _ = _post(f"{p.url}/v1/models/taxi:predict", {"instances": rows[:1]})
            assert code == 200
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with open(f"/proc/{p.proc.pid}/task/{p.proc.pid}/children") as fh:
                now = [int(x) for x in fh.read().split()]
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.5)
        assert len(now) == 2 and workers[0] not in now, now
        text = urllib.request.urlopen(f"{p.url}/metrics").read().decode()
        assert "mlplatform_worker_restarts_total 1.0" in text
        workers = now
    finally:
        ls.stop(p)
    assert p.proc.returncode == 0
    assert not [w for w in workers if os.path.exists(f"/proc/{w}")]


def test_a_model_that_cannot_load_stops_a_multi_worker_server(server, tmp_path):
    """gunicorn would replace a worker forever; a model that does not load ends the server
    with the single process's status (2) instead."""
    _, version, _, _ = server
    p = ls.model_server(
        "broken", "taxi", f"models:/taxi-classifier/{int(version) + 100}", _TRACKING["uri"],
        tmp_path, extra_args=["--workers", "2"],
    )
    try:
        assert p.proc.wait(timeout=180) == 2, p.log_tail()
    finally:
        ls.stop(p)


def _logging_pids(folder) -> set[int]:
    # Request-log files are named <prefix><stamp>-<pid>-<seq><suffix>.
    return {int(f.name.rsplit("-", 2)[1]) for f in folder.glob("*")} if folder.exists() else set()


def _requests_200(metrics: str, version: str) -> float:
    label = f'version="taxi-classifier/{version}"'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mlplatform_requests_total{") and label in line and 'code="200"' in line
    )
