"""Batch scoring rows/min: local (one process, chunked) vs Spark (standalone, 2 workers), one run.

Trains the taxi candidate of `--family` (XGBoost by default) in a temporary home, tiles its
Feast training set's rows up to each size in `--rows`, and scores the same Parquet file both
ways with the same artifact. The Spark cluster (master + 2 workers of 1 core / 2g, loopback)
is started here and stopped at the end; its one-off start-up and the executors' first model
load are timed apart (a warm-up job), since a standing cluster pays them once.

    .venv/bin/python bench/scoring.py                      # 1M and 10M rows
    .venv/bin/python bench/scoring.py --rows 200000,1000000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from mlplatform.jobs.data import features_job, gate_for, source_path
from mlplatform.jobs.models import train_candidate
from mlplatform.jobs.scoring import score_file
from mlplatform.packaging.contract import Contract
from mlplatform.spark.cluster import spark_session, start_cluster, stop_cluster
from mlplatform.spark.scoring import score_file_spark
from mlplatform.tracking import use_workspace

# The request contract caps one parse at 10,000 rows; local scoring's chunk must fit in it.
LOCAL_CHUNK = 10_000


def train(home: Path, family: str) -> tuple[str, pd.DataFrame]:
    gate = gate_for("taxi", home)
    if not gate.process(source_path(gate.spec, None)).accepted:
        raise SystemExit("taxi: the shipped data was quarantined; see `mlplatform quarantine`")
    ts = home / "training_set.parquet"
    features_job("taxi", home, ts)
    run = train_candidate("taxi", family, ts, home)
    return run.model_uri, pd.read_parquet(ts)


def tiled(rows: pd.DataFrame, n: int, path: Path) -> Path:
    """`n` rows repeating `rows` in order, as one Parquet file of 100k-row groups."""
    idx = np.resize(np.arange(len(rows)), n)
    rows.iloc[idx].reset_index(drop=True).to_parquet(path, index=False, row_group_size=100_000)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1000000,10000000",
                    help="comma-separated input sizes (default 1M and 10M)")
    ap.add_argument("--family", default="xgboost", choices=["logistic", "xgboost", "keras"])
    a = ap.parse_args()
    sizes = [int(s) for s in a.rows.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        uri, ts = train(home, a.family)
        use_workspace(home, "taxi")
        model = mlflow.pyfunc.load_model(uri)
        inputs = ts[Contract.of_model(model).names]
        t0 = time.perf_counter()
        cluster = start_cluster(tmp / "spark", workers=2, worker_cores=1, worker_memory="2g")
        try:
            spark = spark_session(
                cluster.master_url, "bench-scoring",
                conf={"spark.cores.max": "2", "spark.ui.showConsoleProgress": "false"},
            )
            spark.sparkContext.setLogLevel("ERROR")
            up = time.perf_counter() - t0
            warm = tiled(inputs, 20_000, tmp / "warm.parquet")
            t0 = time.perf_counter()
            score_file_spark(spark, uri, "bench", warm, tmp / "warm-out", model=model)
            warm_s = time.perf_counter() - t0
            print(f"\ntaxi {a.family}; Spark: cluster + session up {up:.1f}s, warm-up job "
                  f"(executors load the model) {warm_s:.1f}s, not counted below")
            print(f"{'rows':>11} {'local s':>8} {'local rows/min':>15} {'spark s':>8} "
                  f"{'spark rows/min':>15} {'spark/local':>11}")
            for n in sizes:
                src = tiled(inputs, n, tmp / f"in-{n}.parquet")
                t0 = time.perf_counter()
                score_file(model, "bench", src, tmp / f"local-{n}.parquet", LOCAL_CHUNK,
                           progress=False)
                loc = time.perf_counter() - t0
                t0 = time.perf_counter()
                res = score_file_spark(spark, uri, "bench", src, tmp / f"spark-{n}", model=model)
                spk = time.perf_counter() - t0
                assert res.rows == n and res.rejected == 0
                print(f"{n:>11,} {loc:>8.1f} {60 * n / loc:>15,.0f} {spk:>8.1f} "
                      f"{60 * n / spk:>15,.0f} {loc / spk:>10.2f}x", flush=True)
                for f in (src, tmp / f"local-{n}.parquet"):
                    f.unlink()
            spark.stop()
        finally:
            stop_cluster(tmp / "spark")


if __name__ == "__main__":
    main()
