"""Shared integration fixtures: one validated taxi workspace with a trained logistic candidate,
built once per test session (gate + Feast training set + training take ~40 s)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mlplatform.jobs import features_job
from mlplatform.spec import UseCase, load_spec
from mlplatform.training.run import train_candidate
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.schema import build_schema
from mlplatform.workspace import REPO_ROOT, Workspace

from ..conftest import source_of


@dataclass(frozen=True)
class TrainedTaxi:
    """A taxi workspace: accepted batch, Feast training set and one trained logistic run.

    Tests that register versions should copy `home` (shutil.copytree) when they need a
    registry of their own; the training run itself is shared read-only."""

    spec: UseCase
    home: Path
    training_set: Path
    run: dict  # train_candidate's output: run_id, model_uri, auc_recent, ...


@pytest.fixture(scope="session")
def trained_taxi(tmp_path_factory) -> TrainedTaxi:
    spec = load_spec(REPO_ROOT / "usecases" / "taxi.yaml")
    home = tmp_path_factory.mktemp("trained-taxi") / "home"
    ws = Workspace.for_usecase(home, "taxi")
    assert Gate(spec, build_schema(spec), ws).process(source_of(spec)).accepted
    ts = home / "training_set.parquet"
    features_job("taxi", home, ts)
    run = train_candidate("taxi", "logistic", ts, home)
    return TrainedTaxi(spec=spec, home=home, training_set=ts, run=run)
