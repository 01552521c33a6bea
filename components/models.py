"""Modelling components: train a family, evaluate it (TFMA, fairness), select, register."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train_model(usecase: str, family: str, home: str, training_set: Input[Dataset]) -> str:
    """Fit one candidate family, package it as an MLflow pyfunc, log it; returns the run id."""
    from pathlib import Path

    from mlplatform.training.run import train_candidate

    return train_candidate(usecase, family, Path(training_set.path), Path(home))["run_id"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate_model(usecase: str, run_id: str, home: str) -> str:
    """TFMA slice metrics and the fairness gate for one candidate; returns the run id."""
    from pathlib import Path

    from mlplatform.model_jobs import evaluate_job

    return evaluate_job(usecase, run_id, Path(home))["run_id"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def select_model(
    usecase: str,
    home: str,
    logistic_run: str,
    xgboost_run: str,
    keras_run: str,
    report: Output[Markdown],
) -> NamedTuple("Winner", run_id=str, model_uri=str, family=str):
    """Best quality within the serving constraints; writes the selection report."""
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from mlplatform.model_jobs import reports_dir, select_job

    folder = reports_dir(usecase, Path(home))
    out = select_job(usecase, [logistic_run, xgboost_run, keras_run], Path(home), folder)
    shutil.copy(out["report"], report.path)
    winner = namedtuple("Winner", ["run_id", "model_uri", "family"])
    return winner(out["run_id"], out["model_uri"], out["family"])


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def register_model(
    usecase: str, run_id: str, model_uri: str, home: str, training_set: Input[Dataset]
) -> str:
    """Register the winner, run the test battery, apply the champion-challenger gate."""
    import json
    from pathlib import Path

    from mlplatform.model_jobs import register_job

    out = register_job(usecase, run_id, model_uri, Path(training_set.path), Path(home))
    print(json.dumps(out, indent=2))
    return out["version"]
