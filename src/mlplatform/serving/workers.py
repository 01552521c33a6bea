"""Several model-server processes behind one port, so one server can use every core.

gunicorn is the process manager: its master binds the port and forks the workers before any of
them imports TensorFlow or loads the model (TensorFlow's and OpenMP's threads do not survive a
fork); each worker then loads its own copy and serves it with uvicorn (uvicorn-worker). A worker
that dies is replaced, and `mlplatform_worker_restarts_total` counts the replacements; a model
that cannot load in a worker fails the whole server (exit 2) rather than leaving a server that
restarts a broken worker forever. Prometheus samples are shared through prometheus_client's
multiprocess mode: every worker (and the master, for the restart counter) writes to files in one
folder, and `/metrics` in any worker reads them all (ADR 0019).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
from collections.abc import Callable

log = logging.getLogger("mlplatform.serving")

WORKER_ENV = "MLPLATFORM_SERVER_WORKER"  # set in a worker: its number (the master has none)
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's switch to multiprocess mode
STOP_GRACE_S = 10
# Loading a model (TensorFlow's import included) may take a minute on a busy machine; a worker
# is only declared hung when it has not reported for this long.
WORKER_TIMEOUT_S = 300
_BOOT_FAILED = 3  # gunicorn's exit status when a worker could not load the application


def worker_index() -> int | None:
    """This process's worker number, None when it is not a worker of a multi-worker server."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None else None


def serve_with_gunicorn(load_app: Callable[[], object], host: str, port: int, n: int) -> int:
    """Serve the ASGI app that `load_app` builds (called in each worker, after the fork) on
    host:port with `n` gunicorn workers; returns the exit status (2: the model did not load)."""
    metrics_dir = tempfile.mkdtemp(prefix="mlplatform-metrics-")
    # Before prometheus_client is imported here or in a worker: every process then writes its
    # samples to files in the folder.
    os.environ[METRICS_ENV] = metrics_dir
    from gunicorn.app.base import BaseApplication

    forks = {"n": 0}

    def pre_fork(server, worker) -> None:
        forks["n"] += 1
        if forks["n"] > n:  # a replacement: the first n forks are the server starting
            _restarts().inc()
            log.warning("worker %s replaced (restart %d)", worker.age, forks["n"] - n)

    def post_fork(server, worker) -> None:
        os.environ[WORKER_ENV] = str(worker.age)

    def child_exit(server, worker) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    class Server(BaseApplication):
        def load_config(self) -> None:
            settings = {
                "bind": f"{host}:{port}",
                "workers": n,
                "worker_class": "uvicorn_worker.UvicornWorker",
                "preload_app": False,  # each worker loads the model after the fork
                "timeout": WORKER_TIMEOUT_S,
                "graceful_timeout": STOP_GRACE_S,
                "accesslog": None,
                "loglevel": "warning",
                "pre_fork": pre_fork,
                "post_fork": post_fork,
                "child_exit": child_exit,
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            app = load_app()
            # No access log: a line per request costs what a request costs. KServe's logging
            # setup, run while the model loads, gave uvicorn's access logger its handlers back.
            access = logging.getLogger("uvicorn.access")
            access.handlers, access.propagate = [], False
            # What loading left lives as long as the worker: out of the collector's reach, as
            # mlplatform.serving.process.serve does for one process.
            gc.collect()
            gc.freeze()
            return app

    from gunicorn.errors import HaltServer

    master = os.getpid()
    try:
        Server().run()
        return 0
    except SystemExit as exc:
        if os.getpid() != master:  # a forked worker leaving: its status is gunicorn's to read
            raise
        code = exc.code if isinstance(exc.code, int) else 1
        return 2 if code == _BOOT_FAILED else code
    except HaltServer as exc:
        # When a second worker also fails to boot while the master halts for the first,
        # gunicorn raises HaltServer out of halt() instead of exiting with its status.
        if os.getpid() != master:
            raise
        return 2 if exc.exit_status == _BOOT_FAILED else int(exc.exit_status or 1)
    finally:
        if os.getpid() == master:  # a worker must not remove the folder the others write to
            shutil.rmtree(metrics_dir, ignore_errors=True)


_RESTARTS = None


def _restarts():
    """The restart counter, created in the master once the metrics folder is set."""
    global _RESTARTS
    if _RESTARTS is None:
        from prometheus_client import Counter

        _RESTARTS = Counter(
            "mlplatform_worker_restarts_total", "Model-server workers replaced after dying"
        )
    return _RESTARTS


class MultiprocessMetrics:
    """Answers GET /metrics from every worker's samples (ASGI middleware; workers only)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if not (scope["type"] == "http" and scope["path"] == "/metrics"):
            await self.app(scope, receive, send)
            return
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        body = generate_latest(registry)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
