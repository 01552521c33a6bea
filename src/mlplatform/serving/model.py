"""The served model: a KServe `Model` around a registered MLflow pyfunc, with the request
contract, the load-time scoring check, the request log and Prometheus metrics labelled by the
version served. Runs in the serving environment (mlplatform.serving.server starts it)."""

from __future__ import annotations

import asyncio
import logging

import kserve
from kserve.errors import InvalidInput
from prometheus_client import Counter, Histogram

from mlplatform.data.labels import decode
from mlplatform.packaging.contract import Contract, ContractError
from mlplatform.packaging.request_scoring import direct_predict

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


