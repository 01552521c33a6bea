"""A fault-injecting proxy in front of a real model server, to rehearse bad canaries.

Runs in the serving environment as its own process. Inference requests (POST /v1/models/...,
/v2/models/...) can be delayed by a constant (``--add-latency-ms``) or in proportion to the
server's own time (``--slowdown 1.15``: a model 15% slower), answered 500 without reaching the
server (``--error-rate``), or have a share of their predictions flipped (``--flip-predictions``:
class 1 - c, probability 1 - p) to simulate a model whose business KPI dropped. Everything else
(health, readiness) passes through untouched.

Since the server's own counters only see what reached it, the proxy's ``/metrics`` are its own,
under the server's names and labels (``mlplatform_requests_total``,
``mlplatform_request_latency_seconds``, ``mlplatform_predicted_positive_total``,
``mlplatform_predicted_rows_total``, labelled model and version) and count what the proxy's
clients got; the server's own metrics stay readable at ``/upstream/metrics``.

    python -m mlplatform.release.faults --upstream http://127.0.0.1:8082 --port 8083 \\
        --add-latency-ms 3 --error-rate 0.05 --flip-predictions
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from contextlib import asynccontextmanager

import aiohttp
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlplatform.release.router import (
    LATENCY_BUCKETS,
    METHODS,
    fetch,
    relay,
    upstream_request,
    upstream_session,
)
from mlplatform.serving.process import add_bind_args, serve

MODEL_IN_PATH = re.compile(r"^/v[12]/models/([^/:]+)")
# Per request, as the champion's at the router. An upstream that fails or times out is not
# caught: the proxy answers 500, as a crashed challenger would.
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=30.0)


class FaultProxy:
    """Forwards to `upstream`, injecting the configured faults into inference requests."""

    def __init__(
        self,
        upstream: str,
        add_latency_ms: float = 0.0,
        error_rate: float = 0.0,
        flip_fraction: float = 0.0,
        seed: int | None = None,
        slowdown: float = 1.0,
    ) -> None:
        if not (0 <= error_rate <= 1 and 0 <= flip_fraction <= 1):
            raise ValueError("the error rate and the flip fraction are within 0..1")
        if add_latency_ms < 0 or slowdown < 1:
            raise ValueError("added latency is >= 0 ms and the slowdown factor >= 1")
        self.upstream = upstream.rstrip("/")
        self.add_latency_s = add_latency_ms / 1000
        self.slowdown = slowdown
        self.error_rate = error_rate
        self.flip_fraction = flip_fraction
        self.rng = random.Random(seed)
        self.versions: dict[str, str] = {}  # model -> last version the upstream reported
        self.client: aiohttp.ClientSession | None = None
        self.registry = CollectorRegistry()
        labels = ["model", "version"]
        self.requests = Counter(
            "mlplatform_requests", "Requests by outcome (at the fault proxy)",
            [*labels, "code"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "mlplatform_request_latency_seconds", "Request latency (at the fault proxy)",
            labels, buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.positives = Counter(
            "mlplatform_predicted_positive", "Rows predicted positive (after faults)",
            labels, registry=self.registry,
        )  # fmt: skip
        self.rows = Counter(
            "mlplatform_predicted_rows", "Rows scored", labels, registry=self.registry
        )
        self.app = Starlette(
            routes=[
                Route("/metrics", self.metrics, methods=["GET"]),
                Route("/upstream/metrics", self.upstream_metrics, methods=["GET"]),
                Route("/{path:path}", self.forward, methods=METHODS),
            ],
            lifespan=self._lifespan,
        )

    @asynccontextmanager
    async def _lifespan(self, app: Starlette):
        async with upstream_session() as client:
            self.client = client
            yield

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def upstream_metrics(self, request: Request) -> Response:
        url = self.upstream + "/metrics"
        resp = await fetch(self.client, "GET", url, b"", [], UPSTREAM_TIMEOUT)
        return Response(resp.content, resp.status_code, media_type=CONTENT_TYPE_LATEST)

    async def forward(self, request: Request) -> Response:
        start = time.perf_counter()
        match = MODEL_IN_PATH.match(request.url.path)
        inference = request.method == "POST" and match is not None
        if inference and self.add_latency_s:
            await asyncio.sleep(self.add_latency_s)
        if inference and self.rng.random() < self.error_rate:
            out: Response = JSONResponse({"error": "injected fault"}, status_code=500)
        else:
            url, headers = upstream_request(self.upstream, request)
            body = await request.body()
            sent = time.perf_counter()
            resp = await fetch(self.client, request.method, url, body, headers, UPSTREAM_TIMEOUT)
            if inference and self.slowdown > 1:  # stretch the server's own time, whatever it is
                await asyncio.sleep((self.slowdown - 1) * (time.perf_counter() - sent))
            content = resp.content
            if inference and resp.status_code == 200:
                content = self._score(match.group(1), content)
            out = relay(resp, content)
        if inference:
            model = match.group(1)
            labels = (model, self.versions.get(model, "unknown"))
            self.latency.labels(*labels).observe(time.perf_counter() - start)
            self.requests.labels(*labels, str(out.status_code)).inc()
        return out

    def _score(self, model: str, content: bytes) -> bytes:
        """Flip a share of the predictions, count what is returned, learn the version."""
        body = json.loads(content)
        if "predictions" in body:  # v1
            version = body.get("model_version", "unknown")
            preds = body["predictions"]
            for p in preds:
                if self.rng.random() < self.flip_fraction:
                    p["prediction"], p["probability"] = 1 - p["prediction"], 1 - p["probability"]
            classes = [p["prediction"] for p in preds]
        else:  # v2: outputs named prediction and probability
            version = body.get("model_version") or "unknown"
            outputs = {o["name"]: o for o in body.get("outputs", [])}
            classes = outputs["prediction"]["data"]
            probs = outputs["probability"]["data"]
            for i in range(len(classes)):
                if self.rng.random() < self.flip_fraction:
                    classes[i], probs[i] = 1 - classes[i], 1 - probs[i]
        self.versions[model] = version
        self.rows.labels(model, version).inc(len(classes))
        self.positives.labels(model, version).inc(sum(int(c) for c in classes))
        return json.dumps(body).encode() if self.flip_fraction else content


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Fault-injecting proxy in front of a model server.")
    ap.add_argument("--upstream", required=True, help="Model server base URL")
    ap.add_argument("--add-latency-ms", type=float, default=0.0, help="Constant delay")
    ap.add_argument(
        "--slowdown", type=float, default=1.0, help="Answer after FACTOR x the server's time"
    )
    ap.add_argument("--error-rate", type=float, default=0.0, help="Share answered 500 (0..1)")
    ap.add_argument(
        "--flip-predictions",
        type=float,
        nargs="?",
        const=1.0,
        default=0.0,
        metavar="FRACTION",
        help="Flip this share of predicted rows (default when given: all)",
    )
    ap.add_argument("--seed", type=int, default=None)
    add_bind_args(ap)
    args = ap.parse_args(argv)
    try:
        proxy = FaultProxy(
            args.upstream,
            args.add_latency_ms,
            args.error_rate,
            args.flip_predictions,
            args.seed,
            args.slowdown,
        )
    except ValueError as exc:
        ap.error(str(exc))
    serve(proxy.app, args.host, args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
