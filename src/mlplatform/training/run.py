"""Train one candidate family on the Feast training set and log everything to MLflow.

The model is evaluated through its own packaged pyfunc, so the numbers recorded are those of
the artifact that would be deployed, not of the in-memory object that built it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.evaluation.slicing import check_slices
from mlplatform.features.tables import EVENT_TS
from mlplatform.spec import UseCase, load_usecase
from mlplatform.training.dataset import Splits, split
from mlplatform.training.families import FAMILIES
from mlplatform.training.preprocessing import Preprocessor

log = logging.getLogger(__name__)
PREDICTIONS_ARTIFACT = "evaluation/test_predictions.parquet"


def held_out_predictions(run_id: str) -> pd.DataFrame:
    """A training run's held-out rows with their label and probability, as it logged them."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=PREDICTIONS_ARTIFACT, dst_path=tmp
        )
        return pd.read_parquet(path)


def _labels(df: pd.DataFrame, spec: UseCase) -> np.ndarray:
    return df[spec.label].astype("int64").to_numpy()


def lineage_tags(spec: UseCase, df: pd.DataFrame, training_set: Path) -> dict[str, str]:
    from mlplatform.tracking import git_commit

    batches = sorted(df["batch_id"].dropna().unique()) if "batch_id" in df else []
    return {
        "usecase": spec.name,
        "spec_hash": spec.spec_hash(),
        "git_commit": git_commit(),
        "data_batches": ",".join(batches),
        "training_set": str(training_set),
        "feature_service": f"{spec.name}_training",
    }


def train_candidate(
    usecase: str, family: str, training_set: Path, home: Path, params: dict | None = None
) -> dict:
    """Fit, package, evaluate basics and log; returns run id and model URI.

    `params` override the family's defaults (e.g. `{"epochs": 3}` for a quick Keras run);
    they are logged with the run like the defaults."""
    import mlflow
    from sklearn.metrics import roc_auc_score

    from mlplatform.data.labels import class_names
    from mlplatform.packaging.latency import measure
    from mlplatform.packaging.pyfunc import log_pyfunc, signature_frame
    from mlplatform.tracking import use_workspace
    from mlplatform.training.mitigation import reweighing_weights

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(FAMILIES)}")
    unknown = sorted(set(params or {}) - set(FAMILIES[family].default_params()))
    if unknown:  # a misspelt parameter would otherwise be ignored without a word
        raise ValueError(
            f"unknown {family} parameter(s) {unknown}; "
            f"known: {sorted(FAMILIES[family].default_params())}"
        )
    spec = load_usecase(usecase)
    df = pd.read_parquet(training_set)
    splits = split(df, spec)
    check_slices(df, spec, splits.recent_start)  # a slice matching nothing is a spec error
    pre = Preprocessor.fit(splits.train, spec)
    fam = FAMILIES[family](pre, seed=spec.split.seed, params=params)
    exp = use_workspace(home, spec.name)
    tags = {**lineage_tags(spec, df, training_set), "family": family}
    with mlflow.start_run(experiment_id=exp, run_name=f"train-{family}", tags=tags) as run:
        mlflow.log_params({f"param_{k}": v for k, v in fam.params.items()})
        mlflow.log_params(
            {
                "seed": fam.seed,
                "split": spec.split.strategy,
                **{f"rows_{k}": v for k, v in splits.sizes().items()},
                "recent_start": str(splits.recent_start),
            }
        )
        y_train = _labels(splits.train, spec)
        weights = None
        if spec.fairness.mitigation == "reweigh" and spec.slices.protected:
            weights = reweighing_weights(splits.train, y_train, spec)
        mlflow.log_params(
            {
                "fairness_mitigation": spec.fairness.mitigation,
                **(
                    {"weight_min": round(weights.min(), 4), "weight_max": round(weights.max(), 4)}
                    if weights is not None
                    else {}
                ),
            }
        )
        t0 = time.perf_counter()
        fam.fit(splits.train, y_train, splits.valid, _labels(splits.valid, spec), weights)
        mlflow.log_metric("fit_seconds", round(time.perf_counter() - t0, 3))
        with tempfile.TemporaryDirectory() as tmp:
            classes = class_names(spec) if spec.label_spec.positive is not None else None
            info = log_pyfunc(fam, spec.selection.threshold, splits.test, Path(tmp), classes)
            mlflow.set_tag("model_uri", info.model_uri)
            model = mlflow.pyfunc.load_model(info.model_uri)
            inputs = signature_frame(splits.test, pre.numeric, pre.categorical)
            out = model.predict(inputs)
            preds = _prediction_frame(splits, spec, out["probability"].to_numpy())
            path = Path(tmp) / "test_predictions.parquet"
            preds.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), "evaluation")
            local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=tmp))
            cost = measure(model, inputs, local)
        y = _labels(splits.test, spec)
        metrics = {"auc_overall": float(roc_auc_score(y, preds["probability"]))}
        recent = preds[preds["recent_period"] == "recent"] if "recent_period" in preds else None
        if recent is not None and recent[spec.label].nunique() == 2:
            metrics["auc_recent"] = float(roc_auc_score(recent[spec.label], recent["probability"]))
        mlflow.log_metrics({**metrics, **cost.as_metrics()})
        log.info("%s: %s, %s", family, metrics, cost)
        return {
            "run_id": run.info.run_id,
            "model_uri": info.model_uri,
            **metrics,
            **cost.as_metrics(),
        }


def _prediction_frame(splits: Splits, spec: UseCase, proba: np.ndarray) -> pd.DataFrame:
    """Held-out rows with their probability: what evaluation and fairness read."""
    df = splits.test.copy()
    df["probability"] = proba
    df[spec.label] = df[spec.label].astype("int64")
    if splits.recent_start is not None:
        df["recent_period"] = np.where(df[EVENT_TS] >= splits.recent_start, "recent", "earlier")
    return df
