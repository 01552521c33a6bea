"""Several model-server processes behind one port, so one server can use every core.

Each worker is a whole server process (its own interpreter and model copy: TensorFlow's and
OpenMP's threads do not survive a fork) listening on the same port with SO_REUSEPORT, so the
kernel spreads connections over the workers. Prometheus samples are shared through
prometheus_client's multiprocess mode: every worker writes its counters and histograms to
files in one folder, and `/metrics` in any worker reads them all, so a scrape sees the whole
server whichever worker answers it (ADR 0019).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

log = logging.getLogger("mlplatform.serving")

WORKER_ENV = "MLPLATFORM_SERVER_WORKER"  # set in a worker: its index (the supervisor has none)
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's switch to multiprocess mode
STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1


def worker_index() -> int | None:
    """This process's worker index, None when it is not a worker of a supervisor."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None else None


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other workers may bind to the same (host, port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _die_with_parent() -> None:
    # A supervisor killed with SIGKILL cannot stop its workers; the kernel does it for us.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(module: str, argv: list[str], workers: int) -> int:
    """Run `workers` copies of `python -m module argv` and wait.

    The first worker to exit ends the server: the others are stopped and its exit code is
    returned (a worker that cannot load its model fails the whole server, as one process
    would, rather than leaving a server that is silently half as large). SIGTERM and SIGINT
    stop every worker.
    """
    metrics_dir = tempfile.mkdtemp(prefix="mlplatform-metrics-")
    procs: list[subprocess.Popen] = []
    stopping = False

    def stop(signum=None, frame=None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for i in range(workers):
            env = {**os.environ, WORKER_ENV: str(i), METRICS_ENV: metrics_dir}
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", module, *argv], env=env, preexec_fn=_die_with_parent
                )
            )
        log.info("started %d workers (pids %s)", workers, ", ".join(str(p.pid) for p in procs))
        code = _wait_first(procs)
        if stopping:  # asked to stop: the workers' exit codes are the signal's doing
            return 0
        log.error("a worker exited with %s: stopping the server", code)
        return code or 1
    finally:
        stop()
        _reap(procs)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _wait_first(procs: list[subprocess.Popen]) -> int:
    while True:
        for p in procs:
            code = p.poll()
            if code is not None:
                return code
        time.sleep(0.2)


def _reap(procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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
