"""Shared integration fixtures: one validated taxi workspace with a trained logistic candidate,
built once per test session (gate + Feast training set + training take ~40 s)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mlplatform.jobs.data import features_job
from mlplatform.jobs.models import TrainedCandidate, train_candidate
from mlplatform.monitoring.requestlog import RequestLog, RequestLogConfig, record_each_row
from mlplatform.spec import UseCase, load_spec
from mlplatform.tracking import use_workspace
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.schema import build_schema
from mlplatform.workspace import REPO_ROOT, Workspace

from ..conftest import source_of


@dataclass(frozen=True)
class TrainedWorkspace:
    """A workspace: accepted batch, Feast training set and one trained logistic run.

    Tests that register versions take a registry of their own with `own_home`; the training
    run itself is shared read-only."""

    spec: UseCase
    home: Path
    training_set: Path
    run: TrainedCandidate  # train_candidate's output: run_id, model_uri, auc_recent, ...

    def own_home(self, tmp_path_factory, name: str) -> Path:
        """A copy of `home` (its own registry, the same trained run) that MLflow now points at."""
        home = tmp_path_factory.mktemp(name) / "home"
        shutil.copytree(self.home, home)
        use_workspace(home, self.spec.name)
        return home

    def skewed_model(self, dst: Path) -> Path:
        """A local copy of the trained artifact whose first numeric input's fitted mean moved
        by 3 standard deviations after packaging: its packed reference scores no longer match
        what any environment computes from it."""
        import json

        import mlflow

        folder = Path(mlflow.artifacts.download_artifacts(self.run.model_uri, dst_path=str(dst)))
        pre_file = next(folder.rglob("preprocessor.json"))
        assert (pre_file.parent / "scoring_check.json").exists()
        pre = json.loads(pre_file.read_text())
        first = pre["numeric"][0]
        pre["means"][first] += 3 * pre["stds"][first]
        pre_file.write_text(json.dumps(pre))
        return folder


def train_workspace(usecase: str, home: Path) -> TrainedWorkspace:
    """Gate the use case's shipped data, build its Feast training set and train a logistic."""
    spec = load_spec(REPO_ROOT / "usecases" / f"{usecase}.yaml")
    ws = Workspace.for_usecase(home, usecase)
    assert Gate(spec, build_schema(spec), ws).process(source_of(spec)).accepted
    ts = home / "training_set.parquet"
    features_job(usecase, home, ts)
    run = train_candidate(usecase, "logistic", ts, home)
    return TrainedWorkspace(spec=spec, home=home, training_set=ts, run=run)


@pytest.fixture(scope="session")
def trained_taxi(tmp_path_factory) -> TrainedWorkspace:
    return train_workspace("taxi", tmp_path_factory.mktemp("trained-taxi") / "home")


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory):
    """A real Spark standalone cluster on 127.0.0.1: master + 2 workers of 1 core / 2g, on free
    ports, its pids and logs in a temporary folder; stopped (by those pids) after the session."""
    from mlplatform.spark.cluster import start_cluster, stop_cluster

    state = tmp_path_factory.mktemp("spark-cluster")
    cluster = start_cluster(state, workers=2, worker_cores=1, worker_memory="2g")
    try:
        yield cluster
    finally:
        free_the_cores()
        stop_cluster(state)


def free_the_cores() -> None:
    """Stop this process's Spark session, if any. The `spark` fixture's session holds both of
    the test cluster's cores; a command or pipeline task started next needs them for its own
    driver (a session asked for again later is started anew)."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


@pytest.fixture
def spark(spark_cluster):
    """A SparkSession on the test cluster using both workers (driver 1g, executors 1g): the
    same one for every test (getOrCreate) unless a test stopped it to free the cores."""
    from mlplatform.spark.cluster import spark_session

    session = spark_session(
        spark_cluster.master_url,
        app_name="mlplatform-tests",
        conf={"spark.cores.max": str(spark_cluster.cores), "spark.ui.showConsoleProgress": "false"},
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def served_champion(trained_taxi, tmp_path_factory, name: str) -> dict:
    """A home of its own whose first version is the champion: its model and training rows."""
    import mlflow

    from mlplatform.governance.stages import champion_is_reference
    from mlplatform.packaging.pyfunc import signature_frame
    from mlplatform.registry import models as reg
    from mlplatform.training.preprocessing import model_inputs

    spec = trained_taxi.spec
    home = trained_taxi.own_home(tmp_path_factory, name)
    run = trained_taxi.run
    version = reg.register(spec, run.run_id, run.model_uri, {"family": "logistic"})
    name = reg.registered_model_name(spec.name)
    reg.client().set_registered_model_alias(name, reg.CHAMPION, version)
    champion_is_reference(spec, home, version)
    model = mlflow.pyfunc.load_model(run.model_uri)
    rows = pd.read_parquet(trained_taxi.training_set)  # every model input, and the label
    return {"spec": spec, "home": home, "version": version, "model": model,
            "rows": rows, "inputs": model_inputs(spec), "frame": signature_frame}


def serve_rows(served, rows: pd.DataFrame, prefix: str, log_dir) -> list[str]:
    """Score `rows` with the champion and log each as its own request, as the server does."""
    spec = served["spec"]
    inputs = served["frame"](rows, *served["inputs"])
    out = served["model"].predict(inputs)
    ids = [f"{prefix}-{i}" for i in range(len(rows))]
    log = RequestLog(RequestLogConfig(log_dir, flush_rows=10_000))
    record_each_row(
        log, spec.name, f"{spec.name}-classifier/{served['version']}", inputs.to_dict("records"),
        list(out["probability"]), list(out["prediction"]), ids,
        [1.7e9 + i for i in range(len(rows))],
    )
    log.close()
    return ids
