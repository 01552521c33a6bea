"""Monitoring components: judge the new traffic, retrain when a trigger asks, request a canary.

Every retraining stage takes the first task's `retrain` decision and returns at once when it is
False (kfp.local runs no `dsl.If`; docs/decisions/0031).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def watch_traffic(
    usecase: str,
    home: str,
    request_log: str,
    min_rows: int,
    new_labels: int,
    drift_windows: int,
    metrics: Output[Metrics],
    report: Output[Markdown],
) -> NamedTuple("Verdict", retrain=bool, reasons=str):
    """Drift, confidence, quality and KPI of the traffic logged since the last run; the
    retraining triggers decide `retrain`."""
    from collections import namedtuple
    from pathlib import Path

    from mlplatform.jobs.monitoring import monitor_job
    from mlplatform.monitoring.triggers import TriggerPolicy

    policy = TriggerPolicy(min_rows=min_rows, new_labels=new_labels, drift_windows=drift_windows)
    verdict = monitor_job(usecase, Path(home), request_log, policy)
    print(verdict.summary())
    metrics.log_metric("rows", verdict.rows)
    metrics.log_metric("new_labels", verdict.new_labels)
    if verdict.confidence is not None:
        metrics.log_metric("confidence", verdict.confidence)
    for feature, d in verdict.drift.items():
        metrics.log_metric(f"drift_{feature}", d["score"])
    Path(report.path).write_text("# Monitoring window\n\n```\n" + verdict.summary() + "\n```\n")
    out = namedtuple("Verdict", ["retrain", "reasons"])
    return out(verdict.retrain, ",".join(verdict.reasons))


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def retrain_features(usecase: str, home: str, retrain: bool, training_set: Output[Dataset]) -> int:
    """Feast training set from every accepted batch (empty when no retraining is asked for)."""
    from pathlib import Path

    from mlplatform.jobs.monitoring import retrain_features_job

    return retrain_features_job(usecase, Path(home), retrain, Path(training_set.path))


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def retrain_candidate(
    usecase: str,
    family: str,
    home: str,
    retrain: bool,
    families: str,
    training_set: Input[Dataset],
) -> str:
    """Train and evaluate one family; "" when skipped or not among `families`."""
    from pathlib import Path

    from mlplatform.jobs.monitoring import retrain_candidate_job

    return retrain_candidate_job(
        usecase, family, Path(home), Path(training_set.path), retrain, families
    )


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def register_retrained(
    usecase: str,
    home: str,
    retrain: bool,
    logistic_run: str,
    xgboost_run: str,
    keras_run: str,
    training_set: Input[Dataset],
) -> NamedTuple("Registered", version=str, gate=str):
    """Select the best candidate, register it: battery and champion-challenger gate."""
    from collections import namedtuple
    from pathlib import Path

    from mlplatform.jobs.monitoring import retrain_register_job

    out = retrain_register_job(
        usecase, Path(home), [logistic_run, xgboost_run, keras_run], Path(training_set.path),
        retrain,
    )
    registered = namedtuple("Registered", ["version", "gate"])
    if out is None:  # no retraining asked for
        return registered("", "skipped")
    return registered(out.version, out.gate)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def request_canary(usecase: str, home: str, version: str, gate: str, canary_percent: int) -> str:
    """Record what came of the triggers; a challenger gets a canary request and an alert."""
    import json
    from pathlib import Path

    from mlplatform.jobs.monitoring import canary_request_job

    out = canary_request_job(usecase, Path(home), version, gate, canary_percent)
    print(json.dumps(out, indent=2))
    return out["status"]
