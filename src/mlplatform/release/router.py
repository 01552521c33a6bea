"""A weighted HTTP router between a champion and a challenger model server (local canary).

Runs in the serving environment (Starlette + aiohttp's client + uvicorn). Every request is
forwarded as is (method, path, query, body, headers) to one upstream:

- ``split``: the challenger gets ``challenger_percent`` of requests. With an ``x-request-id``
  header the choice is a hash of it, so a retried request lands where it landed before;
  without one it is random.
- ``shadow``: the champion answers every request; a copy goes to the challenger in the
  background, its answer discarded and its errors ignored (it is still measured).
- ``champion-only``: everything goes to the champion.

The router never makes a client request fail because of the challenger: a challenger that
cannot be reached, times out or answers 5xx is retried on the champion (predictions are
idempotent). Its own ``/metrics`` count inference requests per upstream and code and time them
per upstream, which is what the canary controller judges: latency and errors as clients see
them. ``GET /router/state``, ``POST /router/weights`` and ``POST /router/mode`` drive it.

    python -m mlplatform.release.router --champion http://127.0.0.1:8081 \\
        --challenger http://127.0.0.1:8082 --port 8080 --challenger-percent 5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import random
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace

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

from mlplatform.release.canary import MODES, ROUTER_LATENCY, ROUTER_REQUESTS
from mlplatform.serving.process import add_bind_args, configure_logging, serve

log = logging.getLogger("mlplatform.release.router")

# Headers that describe one TCP hop, not the message; forwarding them would corrupt framing.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# The client hands back decoded bodies and uvicorn adds its own date/server headers.
DROP_FROM_RESPONSE = HOP_BY_HOP | {"content-encoding", "date", "server"}
_DROP_RAW = frozenset(h.encode("latin-1") for h in DROP_FROM_RESPONSE)
INFERENCE_PREFIXES = ("/v1/models/", "/v2/models/")
# Fine buckets in the range model servers answer in, so a 10-15% p99 shift is visible.
# Fine buckets where model servers answer (a 10-15% p99 shift must be visible), coarser above.
LATENCY_BUCKETS = (
    *(i / 2000 for i in range(1, 40)),  # 0.5 ms steps below 20 ms
    *(i / 400 for i in range(8, 40)),  # 2.5 ms steps below 100 ms
    *(i / 40 for i in range(4, 20)),  # 25 ms steps below 500 ms
    *(0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 2.5, 5.0, 10.0),
)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@dataclass(frozen=True)
class Answer:
    """An upstream's response, read whole: status, the headers worth passing on, body."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    content: bytes


@dataclass(frozen=True)
class RouteState:
    """One immutable routing decision table; replaced whole, so no request sees half of it."""

    challenger_percent: int
    mode: str
    generation: int = 0


def upstream_session() -> aiohttp.ClientSession:
    """The client session a proxy forwards with (call it inside the running event loop)."""
    # aiohttp, not httpx: httpx's pool checks every idle connection on every request (a
    # poll() each), so the busier the router, the more connections and the slower each
    # request; at a few hundred req/s it spent ~5 ms of CPU per request.
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=0)
    return aiohttp.ClientSession(
        connector=connector, auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar()
    )


async def fetch(
    client: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes,
    headers: list[tuple[str, str]],
    timeout: aiohttp.ClientTimeout,
) -> Answer:
    """One request forwarded as is and read whole, keeping the headers worth passing on;
    aiohttp's errors (and TimeoutError) propagate."""
    async with client.request(
        method,
        url,
        data=body,
        headers=headers,
        timeout=timeout,
        allow_redirects=False,  # a redirect is the client's to follow
        skip_auto_headers=("Content-Type",),  # forward the client's, or none
    ) as r:
        content = await r.read()
        kept = [(k, v) for k, v in r.raw_headers if k.lower() not in _DROP_RAW]
        return Answer(r.status, kept, content)


def relay(
    answer: Answer, content: bytes | None = None, extra: list[tuple[bytes, bytes]] | None = None
) -> Response:
    """The response that passes an upstream's answer on: its status and kept headers, the body
    (`content` when the proxy rewrote it) with its own Content-Length, then `extra` headers."""
    out = Response(answer.content if content is None else content, status_code=answer.status_code)
    length = [h for h in out.raw_headers if h[0] == b"content-length"]  # of the body sent
    out.raw_headers = answer.headers + length + (extra or [])
    return out


def upstream_request(base: str, request: Request) -> tuple[str, list[tuple[str, str]]]:
    """The URL at `base` and the headers to forward `request` with (hop-by-hop ones dropped)."""
    url = base + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    return url, headers


def pick(state: RouteState, request_id: str | None, rng: random.Random) -> str:
    """The upstream that answers a request under `state` (the challenger only in split mode)."""
    if state.mode != "split" or state.challenger_percent <= 0:
        return "champion"
    if state.challenger_percent >= 100:
        return "challenger"
    if request_id:  # stable: the same id always falls in the same one of 10 000 buckets
        digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest, "big") % 10_000
    else:
        bucket = rng.randrange(10_000)
    return "challenger" if bucket < state.challenger_percent * 100 else "champion"


class Router:
    """The router's state, upstream client and metrics; `app` is the ASGI application."""

    def __init__(
        self,
        champion: str,
        challenger: str,
        challenger_percent: int = 5,
        mode: str = "split",
        timeout_s: float = 30.0,
        challenger_timeout_s: float = 5.0,
        max_shadow_in_flight: int = 64,
        seed: int | None = None,
    ) -> None:
        self.upstreams = {"champion": champion.rstrip("/"), "challenger": challenger.rstrip("/")}
        self.state = RouteState(_percent(challenger_percent), _mode(mode))
        self.timeouts = {"champion": timeout_s, "challenger": challenger_timeout_s}
        self.max_shadow_in_flight = max_shadow_in_flight
        self.rng = random.Random(seed)
        self.client: aiohttp.ClientSession | None = None
        self._shadows: set[asyncio.Task] = set()  # strong references until each copy is done
        self.registry = CollectorRegistry()
        self.requests = Counter(
            ROUTER_REQUESTS,
            "Inference requests forwarded, by upstream, code (or 'unreachable') and shadow copy",
            ["upstream", "code", "shadow"],
            registry=self.registry,
        )
        self.latency = Histogram(
            ROUTER_LATENCY,
            "Upstream latency of inference requests as measured at the router",
            ["upstream"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "mlplatform_router_retries",
            "Challenger failures answered by the champion instead",
            ["reason"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "mlplatform_router_shadow_dropped",
            "Shadow copies not sent because too many were in flight",
            registry=self.registry,
        )
        self.app = Starlette(
            routes=[
                Route("/router/state", self.get_state, methods=["GET"]),
                Route("/router/weights", self.set_weights, methods=["POST"]),
                Route("/router/mode", self.set_mode, methods=["POST"]),
                Route("/metrics", self.metrics, methods=["GET"]),
                Route("/{path:path}", self.forward, methods=METHODS),
            ],
            lifespan=self._lifespan,
        )

    @asynccontextmanager
    async def _lifespan(self, app: Starlette):
        async with upstream_session() as client:
            self.client = client
            yield
            for task in list(self._shadows):
                task.cancel()

    # --- control plane -------------------------------------------------------------------

    def describe(self) -> dict:
        return {**asdict(self.state), "upstreams": dict(self.upstreams)}

    async def get_state(self, request: Request) -> JSONResponse:
        return JSONResponse(self.describe())

    async def set_weights(self, request: Request) -> JSONResponse:
        return await self._update(
            request, "challenger_percent", _percent, "{'challenger_percent': 0..100}"
        )

    async def set_mode(self, request: Request) -> JSONResponse:
        return await self._update(request, "mode", _mode, f"{{'mode': one of {list(MODES)}}}")

    async def _update(self, request: Request, field: str, parse, expected: str) -> JSONResponse:
        """Parse one field of the JSON body and swap it into the state, or answer 400."""
        try:
            value = parse((await request.json())[field])
        except (ValueError, KeyError, TypeError) as exc:
            return _bad(f"{field}: {exc}; send {expected}")
        self._swap(**{field: value})
        return JSONResponse(self.describe())

    def _swap(self, **changes) -> None:
        # One assignment of a new frozen object: a request reads `self.state` once and routes
        # on that snapshot, so it sees either the old table or the new one, never a mix.
        self.state = replace(self.state, generation=self.state.generation + 1, **changes)
        log.info("routing now %s", self.state)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    # --- data plane ----------------------------------------------------------------------

    async def forward(self, request: Request) -> Response:
        body = await request.body()
        state = self.state  # the one snapshot this request is routed on
        target = pick(state, request.headers.get("x-request-id"), self.rng)
        if state.mode == "shadow":
            self._mirror(request, body)
        resp = await self._send(target, request, body)
        if target == "challenger" and (resp is None or resp.status_code >= 500):
            self.retries.labels("unreachable" if resp is None else "5xx").inc()
            target, resp = "champion", await self._send("champion", request, body)
        if resp is None and target == "champion":
            resp = await self._send("champion", request, body)  # e.g. a stale pooled socket
        if resp is None:
            return JSONResponse({"error": "the champion upstream is unreachable"}, 502)
        return relay(resp, extra=[(b"x-mlplatform-upstream", target.encode())])

    async def _send(
        self, upstream: str, request: Request, body: bytes, shadow: bool = False
    ) -> Answer | None:
        """Forward to `upstream`; None when it cannot be reached or does not answer in time."""
        assert self.client is not None, "the router's lifespan has not started"
        url, headers = upstream_request(self.upstreams[upstream], request)
        measured = request.method == "POST" and request.url.path.startswith(INFERENCE_PREFIXES)
        start = time.perf_counter()
        try:
            resp = await self._request(request.method, url, body, headers, upstream)
            code = str(resp.status_code)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("%s upstream %s failed: %r", upstream, url, exc)
            resp, code = None, "unreachable"
        if measured:
            self.requests.labels(upstream, code, "true" if shadow else "false").inc()
            if resp is not None:  # a refused connection's few microseconds are not a latency
                self.latency.labels(upstream).observe(time.perf_counter() - start)
        return resp

    async def _request(self, method: str, url: str, body: bytes, headers, upstream: str) -> Answer:
        """One request to `upstream`, read whole; aiohttp's errors propagate to `_send`."""
        timeout = aiohttp.ClientTimeout(total=self.timeouts[upstream])
        for attempt in range(2):  # a refused/reset connect is re-dialled once
            try:
                return await fetch(self.client, method, url, body, headers, timeout)
            except aiohttp.ClientConnectorError:
                if attempt:
                    raise
        raise AssertionError("not reached")

    def _mirror(self, request: Request, body: bytes) -> None:
        # Bounded so a slow challenger cannot pile up copies and starve the champion's path.
        if len(self._shadows) >= self.max_shadow_in_flight:
            self.shadow_dropped.inc()
            return
        task = asyncio.get_running_loop().create_task(
            self._send("challenger", request, body, shadow=True)
        )
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)


def _percent(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"{value!r} is not an integer between 0 and 100")
    return value


def _mode(value) -> str:
    if value not in MODES:
        raise ValueError(f"{value!r} is not one of {list(MODES)}")
    return value


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Weighted champion/challenger HTTP router.")
    ap.add_argument("--champion", required=True, help="Champion base URL, e.g. http://h:8081")
    ap.add_argument("--challenger", required=True, help="Challenger base URL")
    ap.add_argument("--challenger-percent", type=int, default=5, help="0..100 (default 5)")
    ap.add_argument("--mode", choices=MODES, default="split")
    ap.add_argument("--timeout-s", type=float, default=30.0, help="Champion request timeout")
    ap.add_argument(
        "--challenger-timeout-s",
        type=float,
        default=5.0,
        help="After this the request is retried on the champion",
    )
    add_bind_args(ap)
    args = ap.parse_args(argv)
    configure_logging()
    try:
        router = Router(
            args.champion,
            args.challenger,
            args.challenger_percent,
            args.mode,
            args.timeout_s,
            args.challenger_timeout_s,
        )
    except ValueError as exc:
        ap.error(str(exc))
    serve(router.app, args.host, args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
