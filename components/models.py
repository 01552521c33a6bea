"""Modelling components: train a family, evaluate it (TFMA, fairness), select, register."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train_model(usecase: str, family: str, home: str, training_set: Input[Dataset]) -> str:
    """Fit one candidate family, package it as an MLflow pyfunc, log it; returns the run id."""
    from pathlib import Path

    from mlplatform.jobs.models import train_candidate

    return train_candidate(usecase, family, Path(training_set.path), Path(home)).run_id


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate_model(
    usecase: str,
    run_id: str,
    home: str,
    metrics: Output[Metrics],
    curves: Output[ClassificationMetrics],
) -> str:
    """TFMA slice metrics and the fairness gate for one candidate; returns the run id.
    `metrics` carries the overall numbers, `curves` the held-out ROC and confusion matrix."""
    from pathlib import Path

    from mlplatform.jobs.models import curves_job, evaluate_job

    out = evaluate_job(usecase, run_id, Path(home))
    for name, value in out.metrics.items():
        metrics.log_metric(name, value)
    c = curves_job(usecase, run_id, Path(home))
    curves.log_roc_curve(c.fpr, c.tpr, c.thresholds)
    curves.log_confusion_matrix(list(c.categories), c.confusion)
    return out.run_id


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

    from mlplatform.jobs.models import reports_dir, select_job

    folder = reports_dir(usecase, Path(home))
    out = select_job(usecase, [logistic_run, xgboost_run, keras_run], Path(home), folder)
    shutil.copy(out.report_embedded, report.path)  # the Pareto plot inside the Markdown
    winner = namedtuple("Winner", ["run_id", "model_uri", "family"])
    return winner(out.run_id, out.model_uri, out.family)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def register_model(
    usecase: str,
    run_id: str,
    model_uri: str,
    home: str,
    training_set: Input[Dataset],
    model: Output[Model],
) -> str:
    """Register the winner, run the test battery, apply the champion-challenger gate. `model`
    names the registered version (`models:/...` URI, alias, battery, gate)."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    from mlplatform.jobs.models import register_job

    out = register_job(usecase, run_id, model_uri, Path(training_set.path), Path(home))
    print(json.dumps(asdict(out), indent=2))
    model.metadata.update(
        {
            "registered_uri": out.registered_uri,
            "version": out.version,
            "family": out.family,
            "alias": out.alias or "",
            "battery_passed": out.battery_passed,
            "gate": out.gate,
        }
    )
    Path(model.path).write_text(out.registered_uri + "\n")
    return out.version
