"""Serving cost of a packaged model, measured through the pyfunc a server would load and the
request path the server runs on it."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ServingCost:
    single_p50_ms: float
    single_p99_ms: float
    batch_rows_per_s: float
    artifact_mb: float

    def as_metrics(self) -> dict[str, float]:
        return {f"serving_{k}": v for k, v in asdict(self).items()}


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1e6


@contextlib.contextmanager
def serving_heap() -> Iterator[None]:
    """Time calls under the garbage collector settings of a model server.

    The server freezes everything loaded at start-up out of the collector
    (mlplatform.serving.process.serve). A pipeline process measuring a candidate holds the
    training data, TensorFlow and Beam besides: without the same freeze, a full collection
    over that heap lands inside a timed call now and then (a 35 ms "p99" with a 1.9 ms p50)
    and would be charged to a model that never pays it when served.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass(frozen=True)
class RequestTimes:
    """Latencies (ms) of one-row requests timed on the server's request path."""

    latencies_ms: list[float]
    seconds: float  # wall time of the timed loop, pacing included
    errors: int = 0
    first_error: str | None = None

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


def time_requests(
    model, rows: pd.DataFrame, n: int, warmup: int, rate: float | None = None,
    count_errors: bool = False,
) -> RequestTimes:
    """Time `n` one-row v1 requests cycling through `rows` as the model server scores them
    (mlplatform.packaging.request_scoring), after `warmup` untimed ones, under the serving
    heap. `rate` paces them (requests/s); `count_errors` records a failing request as a
    finding instead of raising."""
    from mlplatform.packaging.request_scoring import request_scorer, single_row_bodies

    score = request_scorer(model)
    bodies = single_row_bodies(rows, n)
    for body in bodies[:warmup]:  # first calls build caches and graphs
        score(body)
    interval = 1.0 / rate if rate else 0.0
    times, errors, first_error = [], 0, None
    with serving_heap():
        start = time.perf_counter()
        for i, body in enumerate(bodies):
            wait = start + i * interval - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            t0 = time.perf_counter()
            try:
                score(body)
            except Exception as exc:
                if not count_errors:
                    raise
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"[:200]
            times.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - start
    return RequestTimes(times, elapsed, errors, first_error)


def measure(
    model, rows: pd.DataFrame, artifact_dir: Path, n_single: int = 300, batch_size: int = 2000
) -> ServingCost:
    """p50/p99 of single-row requests over `n_single` calls, and batch throughput.

    A single-row call is what the model server does for one v1 request without its HTTP: the
    contract parses the body, the packaged model scores the columns
    (mlplatform.packaging.request_scoring). Batch throughput goes through MLflow's `predict`,
    as batch scoring does.
    """
    timed = time_requests(model, rows, n_single, warmup=20)
    reps = int(np.ceil(batch_size / len(rows)))
    batch = pd.concat([rows] * reps, ignore_index=True).head(batch_size)
    model.predict(batch)
    t0 = time.perf_counter()
    model.predict(batch)
    elapsed = time.perf_counter() - t0
    return ServingCost(
        single_p50_ms=round(timed.percentile(50), 3),
        single_p99_ms=round(timed.percentile(99), 3),
        batch_rows_per_s=round(len(batch) / elapsed, 1),
        artifact_mb=round(folder_mb(artifact_dir), 3),
    )
