"""The platform's model server: a KServe `Model` around a registered MLflow pyfunc.

Runs in the serving environment. KServe supplies the protocols (v1 and the Open Inference
Protocol v2), health and readiness; this module adds request validation against the
signature, Prometheus metrics labelled by model version, and a loopback-by-default bind
(KServe 0.14 always binds 0.0.0.0, so the app is served by our own uvicorn).

    python -m mlplatform.serving.server --model-name taxi \\
        --model-uri models:/taxi-classifier@champion --tracking-uri sqlite:///.../mlflow.db
"""

from __future__ import annotations

import os

# Before numpy loads (kserve imports it): BLAS and OpenMP run one thread per process unless the
# operator sets these. A single-row prediction gains nothing from more, and the idle-spinning
# pool threads of several processes fight for the same cores: at 500 req/s on 2 cores the p99
# of two workers fell from 22 to 6 ms (bench/serving.py, ADR 0019).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import kserve  # noqa: E402
from kserve.errors import InvalidInput  # noqa: E402
from prometheus_client import Counter, Histogram  # noqa: E402

from mlplatform.data.labels import decode  # noqa: E402
from mlplatform.packaging.contract import Contract, ContractError  # noqa: E402
from mlplatform.packaging.request_scoring import direct_predict  # noqa: E402
from mlplatform.serving import workers  # noqa: E402
from mlplatform.serving.process import add_bind_args, configure_logging, serve  # noqa: E402

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
# Up to this many rows a prediction (~1 ms) runs on the event loop: handing it to a worker
# thread cost more than the prediction itself (a thread hop and a GIL hand-off per request).
# Larger requests still go to a thread so they do not hold up health checks and small ones.
INLINE_MAX_ROWS = 64


class PlatformModel(kserve.Model):
    """Loads `model_uri` (an alias or version in the MLflow registry) and serves it."""

    def __init__(self, name: str, model_uri: str, tracking_uri: str | None = None) -> None:
        super().__init__(name)
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.version = "unknown"
        self.contract: Contract | None = None
        self.pyfunc = None
        self._predict = None  # the packaged model's predict (see scoring.direct_predict)
        self.classes: tuple[str, str] | None = None  # the label's own (negative, positive)
        self.request_log = None  # a mlplatform.monitoring.requestlog.RequestLog when enabled
        self.online = None  # a mlplatform.serving.online.OnlineFeatures with --feature-repo

    def load(self) -> bool:
        import mlflow

        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
        uri = self._resolve(self.model_uri)
        self.pyfunc = mlflow.pyfunc.load_model(uri)
        self.contract = Contract.of_model(self.pyfunc, uri)
        self._predict = direct_predict(self.pyfunc)
        self.classes = _class_names(self.pyfunc)
        self._check_scoring(uri)
        self.ready = True
        log.info("serving %s as %s (version %s)", uri, self.name, self.version)
        return self.ready

    def _check_scoring(self, uri: str) -> None:
        """Re-score the artifact's reference rows through the request path; refuse to serve a
        model that this server's code and libraries score differently from packaging
        (mlplatform.packaging.scoring_check)."""
        from mlplatform.packaging import scoring_check

        result = scoring_check.run(
            self.pyfunc, lambda body: self._predict(self.contract.columns_v1(body))[0]
        )
        if result is None:
            log.warning("%s carries no reference scores: served without the scoring check", uri)
            return
        log.info(
            "scoring check passed: %d reference rows, max abs difference %.3g",
            result.rows,
            result.max_abs_diff,
        )

    def _resolve(self, uri: str) -> str:
        """Pin an alias to its version now, so every metric names the version served."""
        from mlplatform.registry.models import pin

        pinned, self.version = pin(uri)
        return pinned

    def _labels(self) -> dict[str, str]:
        return {"model": self.name, "version": self.version}

    @property
    def version_number(self) -> str:
        """The registry version served (`3` of `taxi-classifier/3`): what Open Inference
        Protocol clients put in `/versions/{version}` and `model_version`."""
        return self.version.rsplit("/", 1)[-1]

    def get_input_types(self) -> list[dict]:
        return self.contract.v2_inputs_metadata() if self.contract is not None else []

    def get_output_types(self) -> list[dict]:
        outputs = [
            {"name": "probability", "datatype": "FP64", "shape": [-1]},
            {"name": "prediction", "datatype": "INT64", "shape": [-1]},
        ]
        if self.classes:
            outputs.append({"name": "class", "datatype": "BYTES", "shape": [-1]})
        return outputs

    def v2_metadata(self) -> dict:
        """`GET /v2/models/{name}`: the contract's inputs, the outputs, the version served."""
        return {
            "name": self.name,
            "versions": [self.version_number],
            "platform": "mlflow_pyfunc",
            "inputs": self.get_input_types(),
            "outputs": self.get_output_types(),
        }

    async def preprocess(self, payload, headers=None):
        try:
            if isinstance(payload, (bytes, str)):
                payload = _json_body(payload)
            if isinstance(payload, kserve.InferRequest):
                inputs = [(t.name, t.datatype, _flat(t.data)) for t in payload.inputs]
                if self.online is not None:
                    inputs = await self._lookup(self.online.fill_v2, inputs)
                return "v2", self.contract.columns_v2(inputs), payload.id
            if self.online is not None:
                payload = await self._lookup(self.online.fill_v1, payload)
            return "v1", self.contract.columns_v1(payload), None
        except ContractError as exc:
            INVALID.labels(**self._labels()).inc()
            raise InvalidInput(str(exc)) from exc

    async def _lookup(self, fill, body):
        """The omitted online features added (mlplatform.serving.online): on the event loop for
        small requests like predict, in a thread for large ones (one store read per request)."""
        if _rows_in(body) <= INLINE_MAX_ROWS:
            return fill(body, self._labels())
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, fill, body, self._labels())

    async def predict(self, parsed, headers=None):
        protocol, rows, request_id = parsed
        if len(rows) <= INLINE_MAX_ROWS:
            prob, pred = self._predict(rows)
        else:
            loop = asyncio.get_running_loop()
            prob, pred = await loop.run_in_executor(None, self._predict, rows)
        prob, pred = prob.tolist(), pred.tolist()  # plain floats and ints for JSON and metrics
        labels = self._labels()
        ROWS.labels(**labels).inc(len(prob))
        POSITIVES.labels(**labels).inc(sum(pred))
        histogram = PREDICTIONS.labels(**labels)
        for p in prob:
            histogram.observe(p)
        if self.request_log is not None:
            _log_request(self, rows, prob, pred, request_id, headers)
        names = decode(self.classes, pred).tolist() if self.classes else None
        if protocol == "v2":
            return _v2_response(self.name, self.version, request_id, prob, pred, names)
        predictions = [
            {"probability": p, "prediction": c} for p, c in zip(prob, pred, strict=True)
        ]
        if names:
            for item, name in zip(predictions, names, strict=True):
                item["class"] = name
        return {"predictions": predictions, "model_version": self.version}


def _class_names(pyfunc) -> tuple[str, str] | None:
    """The label's (negative, positive) names when the artifact carries them."""
    try:
        classes = getattr(pyfunc.unwrap_python_model(), "classes", None)
    except Exception:  # not a python_model flavour
        return None
    return tuple(classes) if classes else None


def _log_request(model: PlatformModel, rows, prob, pred, request_id, headers) -> None:
    """Append the scored rows to the request log (sampled, buffered): the join key for labels
    that arrive later is the client's x-request-id (or the v2 id) and the row's position."""
    if not model.request_log.sampled():  # decided first: an unsampled request costs nothing
        return
    rid = request_id or (headers or {}).get("x-request-id") or None
    model.request_log.record(
        rid,
        model.name,
        model.version,
        rows.records(),
        prob,
        pred,
        sampled=True,
    )


def _rows_in(body) -> int:
    """Rows of a v1 body or of v2 (name, datatype, data) tensors; 0 when malformed."""
    if isinstance(body, dict):
        rows = body.get("instances", body.get("inputs"))
        return len(rows) if isinstance(rows, list) else 0
    return len(body[0][2]) if body else 0


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


def _v2_response(
    name: str, version: str, request_id, prob: list, pred: list, names: list | None = None
):
    from kserve import InferOutput, InferResponse

    prob = InferOutput(
        name="probability",
        shape=[len(prob)],
        datatype="FP64",
        data=prob,
    )
    pred = InferOutput(
        name="prediction",
        shape=[len(pred)],
        datatype="INT64",
        data=pred,
    )
    outputs = [prob, pred]
    if names:
        outputs.append(
            InferOutput(name="class", shape=[len(names)], datatype="BYTES", data=names)
        )
    return InferResponse(
        response_id=request_id or "",
        model_name=name,
        model_version=version,
        infer_outputs=outputs,
    )


def build_app(model: PlatformModel):
    """The KServe REST application for one loaded model, with request metrics."""
    from fastapi import FastAPI
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
    _errors_as_json(app)
    if model.online is not None:
        from mlplatform.serving.online import install_error_handlers

        install_error_handlers(app)  # an unknown entity is a 422, a failed store a 503
    app.add_middleware(_Measure, model=model)
    app.add_middleware(_PinnedVersion, model=model)
    if workers.worker_index() is not None:
        app.add_middleware(workers.MultiprocessMetrics)
    return app


def _errors_as_json(app) -> None:
    """Every error as `{"error": message}` (the Open Inference Protocol's error body), also
    the framework's own: an unknown route (404), a wrong method (405) and a body that is not
    the protocol's shape (422) otherwise answer FastAPI's `{"detail": ...}`."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    async def http_error(request, exc: HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"{request.url.path} is not a route of this server (see /docs)"
        return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)

    async def invalid_body(request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: "
            f"{e.get('msg', 'invalid')}"
            for e in exc.errors()[:5]
        )
        return JSONResponse({"error": f"the request does not fit the protocol: {problems}"}, 422)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_body)


def _not_served(path: str) -> bool:
    # One server serves one pinned version: no repository (a client could unload the model),
    # no explainer. KServe answers those 200/501/503.
    return path.startswith("/v2/repository") or ":explain" in path


async def _answer(send, status: int, message: str) -> None:
    await _answer_json(send, status, {"error": message})


async def _answer_json(send, status: int, body: dict) -> None:
    import json

    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


class _PinnedVersion:
    """The server serves one pinned version: repository and explain routes are 404;
    version-addressed routes (`/v2/models/{name}/versions/{v}/...`) and `?model_version=`
    (Open Inference Protocol) are served when they name the version served and 404 otherwise
    (KServe 0.14 answers both with 501 whatever the version); the model metadata names it."""

    def __init__(self, app, model: PlatformModel) -> None:
        self.app, self.model = app, model

    def _unversioned(self, path: str) -> str | None:
        """`/v2/models/{name}/versions/{v}[/ready|/infer]` as the unversioned route when `v`
        is the version served (its number, or `registered/number`); else None."""
        prefix = f"/v2/models/{self.model.name}/versions/"
        if not path.startswith(prefix):
            return None
        rest = path[len(prefix) :]
        for served in (self.model.version, self.model.version_number):
            if rest == served or rest.startswith(served + "/"):
                return f"/v2/models/{self.model.name}" + rest[len(served) :]
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and "/versions/" in scope["path"]:
            path = self._unversioned(scope["path"])
            if path is None:
                await _answer(
                    send,
                    404,
                    f"{scope['path']}: this server serves {self.model.name} version "
                    f"{self.model.version_number} only",
                )
                return
            scope = {**scope, "path": path, "raw_path": path.encode()}
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].rstrip("/") == f"/v2/models/{self.model.name}"
        ):
            await _answer_json(send, 200, self.model.v2_metadata())
            return
        if scope["type"] == "http" and _not_served(scope["path"]):
            await _answer(
                send,
                404,
                f"{scope['path']} is not served: this server serves {self.model.version} only "
                "(no model repository, explainer or version-addressed routes)",
            )
            return
        if scope["type"] == "http" and b"model_version" in scope.get("query_string", b""):
            from urllib.parse import parse_qsl, urlencode

            query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            asked = [v for k, v in query if k == "model_version"]
            served = {self.model.version, self.model.version_number}
            if any(v not in served for v in asked):
                await _answer(
                    send,
                    404,
                    f"model_version {asked[0]} is not served here; this server serves "
                    f"version {self.model.version}",
                )
                return
            rest = urlencode([(k, v) for k, v in query if k != "model_version"])
            scope = {**scope, "query_string": rest.encode("latin-1")}
        await self.app(scope, receive, send)


class _Measure:
    """Counts and times inference requests up to the response's status line.

    A plain ASGI middleware: Starlette's `@app.middleware("http")` (BaseHTTPMiddleware) runs
    every request in an extra task with memory streams, a large share of a ~1 ms request.
    """

    def __init__(self, app, model: PlatformModel) -> None:
        self.app, self.model = app, model

    async def __call__(self, scope, receive, send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith(("/v1/models", "/v2/models"))
        ):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message) -> None:
            if message["type"] == "http.response.start":
                labels = {"model": self.model.name, "version": self.model.version}
                LATENCY.labels(**labels).observe(time.perf_counter() - start)
                REQUESTS.labels(code=str(message["status"]), **labels).inc()
            await send(message)

        await self.app(scope, receive, timed_send)


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
    ap.add_argument(
        "--request-log",
        default=None,
        help="Log scored rows (JSON lines, rotating) under this folder "
        "(default: $MLPLATFORM_REQUEST_LOG_DIR; off when neither is set)",
    )
    ap.add_argument(
        "--request-log-sample",
        default=None,
        help="Share of requests logged, in (0, 1] (default $MLPLATFORM_REQUEST_LOG_SAMPLE or 1)",
    )
    ap.add_argument(
        "--feature-repo",
        default=None,
        metavar="DIR",
        help="Feast repository (a folder with feature_store.yaml, e.g. .mlplatform/taxi/feast, "
        "or the yaml itself): a request may then omit the model inputs its online feature "
        "views serve, and they are read by the entity keys the request carries (an entity key "
        "that is not a model input, like credit's id, is accepted and not passed to the model). "
        "A field the client sends, even null, wins over the store; a missing entity key is a "
        "400 naming it. The views are read at start (restart after `feast apply`); /metrics "
        "adds mlplatform_feature_lookup* (docs/decisions/0017)",
    )
    ap.add_argument(
        "--on-missing-entity",
        choices=["reject", "impute"],
        default="reject",
        help="An entity without an online row: 'reject' answers 422 naming the entity "
        "(default); 'impute' sends nulls, which the model imputes as for unmatched rows in "
        "training. Both count mlplatform_feature_lookup_misses_total",
    )
    ap.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="Server processes sharing the port (default 1; 'auto' = one per core). Each "
        "loads its own copy of the model; /metrics in any of them covers all of them",
    )
    add_bind_args(ap)
    args = ap.parse_args(argv)
    configure_logging()
    worker = workers.worker_index()
    if args.workers > 1 and worker is None:
        argv = sys.argv[1:] if argv is None else list(argv)
        raise SystemExit(workers.supervise("mlplatform.serving.server", argv, args.workers))
    model = PlatformModel(args.model_name, args.model_uri, args.tracking_uri)
    model.request_log = _request_log(ap, args.request_log, args.request_log_sample)
    try:
        model.load()
    except Exception as exc:  # a server that cannot load must say why and exit non-zero
        log.error("cannot load %s: %s", args.model_uri, exc)
        raise SystemExit(2) from exc
    if args.feature_repo:
        model.online = _online(args.feature_repo, model, args.on_missing_entity)
    sock = workers.reuse_port_socket(args.host, args.port) if worker is not None else None
    serve(build_app(model), args.host, args.port, sock)


def _workers(value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--workers takes a number or 'auto', not {value!r}"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--workers must be at least 1, not {n}")
    return n


def _online(repo: str, model: PlatformModel, on_missing: str):
    from mlplatform.serving.online import OnlineFeatures

    try:
        online = OnlineFeatures.open(repo, model.contract.names, on_missing)
    except Exception as exc:  # a lookup the operator asked for and cannot have: say why, exit
        log.error("cannot open the feature repository %s: %s", repo, exc)
        raise SystemExit(2) from exc
    log.info(
        "online lookup from %s (%s on a missing entity): %s", repo, on_missing, online.describe()
    )
    return online


def _request_log(ap: argparse.ArgumentParser, directory: str | None, sample: str | None):
    import atexit

    from mlplatform.monitoring.requestlog import RequestLog, RequestLogConfig

    try:
        config = RequestLogConfig.from_env(directory, sample)
    except ValueError as exc:
        ap.error(str(exc))
    if config is None:
        return None
    log_ = RequestLog(config)
    atexit.register(log_.close)  # the buffered tail reaches disk on a clean shutdown
    log.info("logging %.0f%% of requests under %s", 100 * config.sample_rate, config.directory)
    return log_


if __name__ == "__main__":
    main(sys.argv[1:])
