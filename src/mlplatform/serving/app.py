"""The HTTP application around one served model: KServe's REST routes (v1, Open Inference
Protocol v2), every error as `{"error": ...}`, the pinned version's routes and metadata, and
request timing for Prometheus."""

from __future__ import annotations

import time

from mlplatform.serving import workers
from mlplatform.serving.model import LATENCY, REQUESTS, PlatformModel


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
        if scope["type"] == "http" and _not_served(scope["path"]):
            await _answer(
                send,
                404,
                f"{scope['path']} is not served: this server serves {self.model.version} only "
                "(no model repository or explainer)",
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
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].rstrip("/") == f"/v2/models/{self.model.name}"
        ):
            await _answer_json(send, 200, self.model.v2_metadata())
            return
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


