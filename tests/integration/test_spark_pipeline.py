"""The batch scoring pipeline's `spark_master` option, run with kfp.local against the real
standalone cluster of the `spark_cluster` fixture: the same pipeline with the option empty
scores in its task; both give the same rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlplatform.packaging import scoring_check
from mlplatform.workspace import REPO_ROOT

from .conftest import free_the_cores

pytestmark = pytest.mark.integration

RUN = """
import sys
from pathlib import Path
from pipelines.local import run_batch_scoring
home, root, source, master = sys.argv[1:5]
run_batch_scoring("taxi", Path(home), Path(root), source=source, model_alias="champion",
                  spark_master=master)
"""


def _pipeline(home: Path, root: Path, source: Path, master: str) -> pd.DataFrame:
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(home), str(root), str(source), master],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=900,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    (predictions,) = [p for p in root.rglob("predictions") if "score-batch" in str(p)]
    return pd.read_parquet(predictions)


@pytest.mark.slow  # ~3 min: two pipeline runs, the executors' first model load
def test_the_batch_pipeline_scores_on_the_cluster_as_in_its_task(
    trained_taxi, spark_cluster, tmp_path_factory, tmp_path
) -> None:
    from mlplatform.registry import models as reg

    free_the_cores()  # other tests' session holds the cores the pipeline's driver needs
    spec, run = trained_taxi.spec, trained_taxi.run
    home = trained_taxi.own_home(tmp_path_factory, "spark-pipeline")
    version = reg.register(spec, run.run_id, run.model_uri, {})
    reg.client().set_registered_model_alias(
        reg.registered_model_name(spec.name), reg.CHAMPION, version
    )
    source = trained_taxi.training_set  # every model input, the aggregates too
    on_spark = _pipeline(home, tmp_path / "spark", source, spark_cluster.master_url)
    in_task = _pipeline(home, tmp_path / "task", source, "")

    assert len(on_spark) == len(in_task) == len(pd.read_parquet(source))
    assert set(on_spark["model_version"]) == set(in_task["model_version"]) == {
        f"taxi-classifier/{version}"
    }
    assert set(on_spark["data_version"]) == set(in_task["data_version"])
    tol = scoring_check.packed(mlflow.pyfunc.load_model(run.model_uri))["tolerance"]
    np.testing.assert_allclose(on_spark["probability"], in_task["probability"], rtol=0, atol=tol)
    assert (on_spark["prediction"].to_numpy() == in_task["prediction"].to_numpy()).all()
