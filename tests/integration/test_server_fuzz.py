"""Fuzz the model server from its own OpenAPI description (schemathesis), bounded.

The server runs in the serving environment as a subprocess. KServe's FastAPI app describes the
v2 request body (InferenceRequest) but not the v1 one (the endpoint reads the raw body), so the
v1 body's schema is written here from the model's signature, with the platform's own mapping
(`Contract.from_schema`). Positive and negative cases: every answer must be below 500, and the
server must still be alive and serving afterwards.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

import pytest

from mlplatform.registry import models as reg
from mlplatform.release import local_stack as ls
from mlplatform.tracking import tracking_uri, use_workspace

pytestmark = pytest.mark.integration
MODEL = "taxi"
# Operations the server does not expose (404), and why; pinned by test_unsupported_operations.
UNSUPPORTED = {
    ("POST", "/v2/repository/models/{model_name}/load"),  # management: no model repository
    ("POST", "/v2/repository/models/{model_name}/unload"),  # would stop the server serving
    ("POST", "/v1/models/{model_name}:explain"),  # no explainer
}
# Every 4xx must carry the protocol's `{"error": ...}` body, FastAPI's own 404/405/422 included.
# 5xx the fuzz may tolerate while a known bug is open (code, text in the answer). Empty: the
# overflow 500 and the model_version 501 it found are fixed and pinned by the tests below.
KNOWN_5XX: dict[str, tuple[int, str]] = {}
# Examples per operation and generation mode: ~200 requests in all, well under a minute.
EXAMPLES = {"/v1/models/{model_name}:predict": 60, "/v2/models/{model_name}/infer": 48}
OTHER_EXAMPLES = 6


@pytest.fixture(scope="module")
def server(trained_taxi, tmp_path_factory):
    """A model server for a version registered in a copy of the shared trained workspace."""
    home = tmp_path_factory.mktemp("fuzz") / "home"
    shutil.copytree(trained_taxi.home, home)  # a registry of its own, the same trained run
    use_workspace(home, MODEL)
    run = trained_taxi.run
    version = reg.register(trained_taxi.spec, run.run_id, run.model_uri, {"family": "x"})
    p = ls.model_server(
        "server", MODEL, f"models:/taxi-classifier/{version}", tracking_uri(home), home
    )
    try:
        ls.wait_ready(p, ls.READY["model"])
        yield p.url, p.proc, run.model_uri
    finally:
        ls.stop(p)


def _signature_body_schema(model_uri: str) -> dict:
    """The v1 body as JSON Schema, from the signature: every field, numbers or text, or null."""
    import mlflow

    from mlplatform.packaging.contract import Contract

    contract = Contract.from_schema(mlflow.models.get_model_info(model_uri).signature.inputs)
    kinds = {"double": ["number", "null"], "string": ["string", "null"]}
    instance = {
        "type": "object",
        "properties": {f.name: {"type": kinds[f.kind]} for f in contract.fields},
        "required": contract.names,
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"instances": {"type": "array", "items": instance, "minItems": 1}},
        "required": ["instances"],
        "additionalProperties": False,
    }


def _schema(base: str, model_uri: str):
    import schemathesis

    doc = json.loads(urllib.request.urlopen(f"{base}/openapi.json", timeout=10).read())
    predict = doc["paths"]["/v1/models/{model_name}:predict"]["post"]
    assert "requestBody" not in predict, "KServe now describes the v1 body: fuzz that instead"
    predict["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": _signature_body_schema(model_uri)}},
    }
    return schemathesis.openapi.from_dict(doc)


def _run(strategy, max_examples: int, base: str, seen: dict, server_errors: list) -> None:
    """Draw and send up to `max_examples` cases; count them, keep every 5xx (known ones are
    counted under their KNOWN_5XX key)."""
    from hypothesis import HealthCheck, given, settings

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run: a failure reproduces
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def send(case) -> None:
        resp = case.call(base_url=base, timeout=30)
        label = case.operation.label
        seen[label] = seen.get(label, 0) + 1
        known = [
            k
            for k, (code, text) in KNOWN_5XX.items()
            if resp.status_code == code and text in resp.text
        ]
        if known:
            seen[known[0]] = seen.get(known[0], 0) + 1
        elif resp.status_code >= 500:
            server_errors.append(
                f"{resp.status_code} {case.method} {case.formatted_path} "
                f"body={str(case.body)[:300]!r}: {resp.text[:300]}"
            )
        elif resp.status_code >= 400 and not _is_error_body(resp.text):
            server_errors.append(
                f"{resp.status_code} without an {{\"error\": ...}} body: {case.method} "
                f"{case.formatted_path}: {resp.text[:300]}"
            )

    send()


def _is_error_body(text: str) -> bool:
    """The Open Inference Protocol's error body: a JSON object with a non-empty `error`."""
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str) and bool(body["error"])


def test_fuzz_from_openapi_no_5xx_and_still_serving(server, capsys):
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    base, proc, model_uri = server
    schema = _schema(base, model_uri)
    seen: dict[str, int] = {}
    server_errors: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in UNSUPPORTED:
            continue
        n = EXAMPLES.get(op.path, OTHER_EXAMPLES)
        # Half the cases address the served model, so they reach the contract and the model.
        pinned = {"model_name": MODEL} if "{model_name}" in op.path else None
        variants = (pinned, None) if pinned else (None,)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in variants:
                strategy = op.as_strategy(generation_mode=mode, path_parameters=path_parameters)
                try:
                    _run(strategy, max(1, n // (2 * len(variants))), base, seen, server_errors)
                except Unsatisfiable:
                    # No invalid request exists (a GET without parameters): nothing to send.
                    assert mode is GenerationMode.NEGATIVE, op.label
    with capsys.disabled():
        known = {k: seen.pop(k) for k in KNOWN_5XX if k in seen}
        print(f"\n[fuzz] {sum(seen.values())} requests, {len(seen)} operations, known 5xx {known}")
    assert not server_errors, "\n".join(server_errors[:10])
    assert sum(seen.values()) >= 100, seen  # the fuzz really ran (and stayed bounded)
    assert any("predict" in label for label in seen) and any("infer" in label for label in seen)
    assert proc.poll() is None, "the server died during the fuzz"
    ready = json.loads(urllib.request.urlopen(base + ls.READY["model"], timeout=10).read())
    assert ready["ready"] is True
    assert _call("POST", f"{base}/v1/models/{MODEL}:predict", _valid_body(model_uri)) == 200


def _call(method: str, url: str, body: dict | None = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def _valid_body(model_uri: str) -> dict:
    import mlflow

    example = mlflow.pyfunc.load_model(model_uri).input_example
    return {"instances": json.loads(example.to_json(orient="records"))}


def test_unsupported_operations_are_not_server_errors(server):
    base, _, model_uri = server
    codes = {
        "load": _call("POST", f"{base}/v2/repository/models/{MODEL}/load"),
        "explain": _call("POST", f"{base}/v1/models/{MODEL}:explain", _valid_body(model_uri)),
    }
    assert codes == {"load": 404, "explain": 404}, codes


def test_model_metadata_describes_the_contract_and_the_version(server):
    """`GET /v2/models/{name}`: one input tensor per signature field, the outputs, and the
    registry version served, which version-addressed routes then accept (and only it)."""
    import mlflow

    base, _, model_uri = server
    code, text = _get(f"{base}/v2/models/{MODEL}")
    meta = json.loads(text)
    assert code == 200 and meta["name"] == MODEL, text
    signature = mlflow.pyfunc.load_model(model_uri).metadata.get_input_schema()
    assert [i["name"] for i in meta["inputs"]] == [c.name for c in signature.inputs]
    assert {i["datatype"] for i in meta["inputs"]} <= {"FP64", "BYTES"}
    assert all(i["shape"] == [-1] for i in meta["inputs"] + meta["outputs"])
    assert [o["name"] for o in meta["outputs"]][:2] == ["probability", "prediction"]
    (version,) = meta["versions"]
    assert version.isdigit(), meta["versions"]
    code, text = _get(f"{base}/v2/models/{MODEL}/versions/{version}/ready")
    assert code == 200 and json.loads(text)["ready"] is True, text
    code, text = _get(f"{base}/v2/models/{MODEL}/versions/{version}")
    assert code == 200 and json.loads(text)["versions"] == [version], text
    code, text = _get(f"{base}/v2/models/{MODEL}/versions/{int(version) + 1}/ready")
    assert code == 404 and _is_error_body(text), (code, text)


def test_framework_errors_answer_the_protocols_error_body(server):
    base, _, _ = server
    code, text = _get(f"{base}/no/such/route")
    assert code == 404 and _is_error_body(text), (code, text)
    req = urllib.request.Request(
        f"{base}/v2/models/{MODEL}/infer", b'{"inputs": "not a list"}',
        {"Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(req, timeout=30)
        code, text = 200, ""
    except urllib.error.HTTPError as err:
        code, text = err.code, err.read().decode()
    assert 400 <= code < 500 and _is_error_body(text), (code, text)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_near_max_double_is_a_4xx_naming_the_field(server):
    base, _, model_uri = server
    body = _valid_body(model_uri)
    body["instances"] = [dict(body["instances"][0], dropoff_latitude=1.7e308)]
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        f"{base}/v1/models/{MODEL}:predict", data, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            code, text = r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        code, text = err.code, err.read().decode()
    assert code == 400 and "dropoff_latitude" in text, (code, text)


def test_model_version_query_is_not_a_server_error(server):
    base, _, _ = server
    for path in (f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/ready"):
        code, text = _get(f"{base}{path}?model_version=1")
        assert code < 500, (path, code, text)
        code, text = _get(f"{base}{path}?model_version=999")
        assert code == 404 and "not served here" in text, (path, code, text)


def test_a_client_cannot_unload_the_served_model(server):
    base, _, model_uri = server
    _call("POST", f"{base}/v2/repository/models/{MODEL}/unload")
    assert _call("POST", f"{base}/v1/models/{MODEL}:predict", _valid_body(model_uri)) == 200
