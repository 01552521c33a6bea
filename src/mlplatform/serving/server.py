"""The platform's model server: a KServe `Model` around a registered MLflow pyfunc.

Runs in the serving environment. KServe supplies the protocols (v1 and the Open Inference
Protocol v2), health and readiness; this module adds request validation against the
signature, Prometheus metrics labelled by model version, and a loopback-by-default bind
(KServe 0.14 always binds 0.0.0.0, so the app is served by our own uvicorn).

    python -m mlplatform.serving.server --model-name taxi \\
        --model-uri models:/taxi-classifier@champion --tracking-uri sqlite:///.../mlflow.db
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

import kserve
from kserve.errors import InvalidInput
from prometheus_client import Counter, Histogram

from mlplatform.serving.contract import Contract, ContractError
from mlplatform.serving.process import add_bind_args, configure_logging, serve

log = logging.getLogger("mlplatform.serving")

REQUESTS = Counter("mlplatform_requests_total", "Requests by outcome", ["model", "version", "code"])
LATENCY = Histogram(
    "mlplatform_request_latency_seconds",
    "Request latency",
    ["model", "version"],
    buckets=(0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
PREDICTIONS = Histogram(
    "mlplatform_prediction_probability",
    "Predicted probabilities",
    ["model", "version"],
    buckets=tuple(i / 10 for i in range(1, 11)),
)
POSITIVES = Counter(
    "mlplatform_predicted_positive_total", "Rows predicted positive", ["model", "version"]
)
ROWS = Counter("mlplatform_predicted_rows_total", "Rows scored", ["model", "version"])
INVALID = Counter(
    "mlplatform_invalid_requests_total", "Requests refused by the contract", ["model", "version"]
)


class PlatformModel(kserve.Model):
    """Loads `model_uri` (an alias or version in the MLflow registry) and serves it."""

    def __init__(self, name: str, model_uri: str, tracking_uri: str | None = None) -> None:
        super().__init__(name)
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.version = "unknown"
        self.contract: Contract | None = None
        self.pyfunc = None

    def load(self) -> bool:
        import mlflow

        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
        uri = self._resolve(self.model_uri)
        self.pyfunc = mlflow.pyfunc.load_model(uri)
        schema = self.pyfunc.metadata.get_input_schema()
        if schema is None:
            raise RuntimeError(f"{uri} has no input signature; the server needs one")
        self.contract = Contract.from_schema(schema)
        self.ready = True
        log.info("serving %s as %s (version %s)", uri, self.name, self.version)
        return self.ready

    def _resolve(self, uri: str) -> str:
        """Pin an alias to its version now, so every metric names the version served."""
        if uri.startswith("models:/") and "@" in uri:
            from mlflow import MlflowClient

            name, alias = uri[len("models:/") :].split("@", 1)
            mv = MlflowClient().get_model_version_by_alias(name, alias)
            self.version = f"{name}/{mv.version}"
            return f"models:/{name}/{mv.version}"
        self.version = uri[len("models:/") :] if uri.startswith("models:/") else uri
        return uri

    def _labels(self) -> dict[str, str]:
        return {"model": self.name, "version": self.version}

    async def preprocess(self, payload, headers=None):
        try:
            if isinstance(payload, (bytes, str)):
                payload = _json_body(payload)
            if isinstance(payload, kserve.InferRequest):
                inputs = [(t.name, t.datatype, _flat(t.data)) for t in payload.inputs]
                return "v2", self.contract.parse_v2(inputs), payload.id
            return "v1", self.contract.parse_v1(payload), None
        except ContractError as exc:
            INVALID.labels(**self._labels()).inc()
            raise InvalidInput(str(exc)) from exc

    async def predict(self, parsed, headers=None):
        protocol, frame, request_id = parsed
        out = await asyncio.get_running_loop().run_in_executor(None, self.pyfunc.predict, frame)
        labels = self._labels()
        ROWS.labels(**labels).inc(len(out))
        POSITIVES.labels(**labels).inc(int(out["prediction"].sum()))
        for p in out["probability"]:
            PREDICTIONS.labels(**labels).observe(float(p))
        if protocol == "v2":
            return _v2_response(self.name, self.version, request_id, out)
        return {
            "predictions": [
                {"probability": float(p), "prediction": int(c)}
                for p, c in zip(out["probability"], out["prediction"], strict=True)
            ],
            "model_version": self.version,
        }


def _json_body(raw: bytes | str):
    import json

    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ContractError(
            f"the body is not JSON ({exc}); send JSON with Content-Type: application/json"
        ) from exc


def _flat(data) -> list:
    out = []
    for v in data:
        out.extend(_flat(v) if isinstance(v, list) else [v])
    return out


def _v2_response(name: str, version: str, request_id, out):
    from kserve import InferOutput, InferResponse

    prob = InferOutput(
        name="probability",
        shape=[len(out)],
        datatype="FP64",
        data=[float(p) for p in out["probability"]],
    )
    pred = InferOutput(
        name="prediction",
        shape=[len(out)],
        datatype="INT64",
        data=[int(c) for c in out["prediction"]],
    )
    return InferResponse(
        response_id=request_id or "",
        model_name=name,
        model_version=version,
        infer_outputs=[prob, pred],
    )


def build_app(model: PlatformModel):
    """The KServe REST application for one loaded model, with request metrics."""
    from fastapi import FastAPI, Request
    from kserve.model_server import ModelServer
    from kserve.protocol.rest.server import RESTServer

    server = ModelServer(workers=1, enable_grpc=False, enable_docs_url=True)
    server.register_model(model)
    app = FastAPI(
        title=f"mlplatform model server: {model.name}",
        openapi_url="/openapi.json",
        docs_url="/docs",
    )
    RESTServer(app, server.dataplane, server.model_repository_extension).create_application()

    @app.middleware("http")
    async def _measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        if request.url.path.startswith(("/v1/models", "/v2/models")) and request.method == "POST":
            labels = {"model": model.name, "version": model.version}
            LATENCY.labels(**labels).observe(time.perf_counter() - start)
            REQUESTS.labels(code=str(response.status_code), **labels).inc()
        return response

    return app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="Serve a registered MLflow model over the KServe "
        "v1 and v2 REST protocols, with /metrics."
    )
    ap.add_argument("--model-name", required=True, help="Name in the URL: /v1/models/<name>")
    ap.add_argument(
        "--model-uri",
        required=True,
        help="models:/<registered>@<alias> or models:/<registered>/<version>",
    )
    ap.add_argument("--tracking-uri", default=None, help="MLflow tracking/registry URI")
    add_bind_args(ap)
    args = ap.parse_args(argv)
    configure_logging()
    model = PlatformModel(args.model_name, args.model_uri, args.tracking_uri)
    try:
        model.load()
    except Exception as exc:  # a server that cannot load must say why and exit non-zero
        log.error("cannot load %s: %s", args.model_uri, exc)
        raise SystemExit(2) from exc
    serve(build_app(model), args.host, args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
