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


def measure(
    model, rows: pd.DataFrame, artifact_dir: Path, n_single: int = 300, batch_size: int = 2000
) -> ServingCost:
    """p50/p99 of single-row requests over `n_single` calls, and batch throughput.

    A single-row call is what the model server does for one v1 request without its HTTP: the
    contract parses the body, the packaged model scores the columns
    (mlplatform.serving.scoring). Batch throughput goes through MLflow's `predict`, as batch
    scoring does.
    """
    from mlplatform.serving.scoring import request_scorer, single_row_bodies

    score = request_scorer(model)
    bodies = single_row_bodies(rows, n_single)
    for body in bodies[:20]:  # warm-up: first calls build caches and graphs
        score(body)
    times = []
    with serving_heap():
        for body in bodies:
            t0 = time.perf_counter()
            score(body)
            times.append((time.perf_counter() - t0) * 1000)
    reps = int(np.ceil(batch_size / len(rows)))
    batch = pd.concat([rows] * reps, ignore_index=True).head(batch_size)
    model.predict(batch)
    t0 = time.perf_counter()
    model.predict(batch)
    elapsed = time.perf_counter() - t0
    return ServingCost(
        single_p50_ms=round(float(np.percentile(times, 50)), 3),
        single_p99_ms=round(float(np.percentile(times, 99)), 3),
        batch_rows_per_s=round(len(batch) / elapsed, 1),
        artifact_mb=round(folder_mb(artifact_dir), 3),
    )
