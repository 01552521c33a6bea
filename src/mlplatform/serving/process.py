"""What every serving process (model server, router, fault proxy) does around its app."""

from __future__ import annotations

import argparse
import gc
import logging
import sys


def add_bind_args(ap: argparse.ArgumentParser, port: int = 8080) -> None:
    ap.add_argument("--host", default="127.0.0.1", help="Bind address (default loopback)")
    ap.add_argument("--port", type=int, default=port)


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def serve(app, host: str, port: int, sock=None) -> None:
    """Run the ASGI app with uvicorn, after moving start-up objects out of the collector.

    Everything loaded so far lives as long as the process; a full collection over it paused
    every in-flight request (~10 ms in the router, ~230 ms in a model server with mlflow
    loaded), so it is frozen first.
    """
    import uvicorn

    gc.collect()
    gc.freeze()
    if sock is None:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
        return
    # A socket bound already (a worker sharing its port with others): uvicorn serves on it.
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
