"""What a training run records and reads back: its lineage tags, its labels, and the held-out
predictions of its packaged model (what evaluation, fairness and the battery read).

The job that trains and logs a candidate is `mlplatform.jobs.models.train_candidate`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.features.tables import EVENT_TS
from mlplatform.spec import UseCase
from mlplatform.training.dataset import Splits

PREDICTIONS_ARTIFACT = "evaluation/test_predictions.parquet"


def held_out_predictions(run_id: str) -> pd.DataFrame:
    """A training run's held-out rows with their label and probability, as it logged them."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=PREDICTIONS_ARTIFACT, dst_path=tmp
        )
        return pd.read_parquet(path)


def label_values(df: pd.DataFrame, spec: UseCase) -> np.ndarray:
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


def prediction_frame(splits: Splits, spec: UseCase, proba: np.ndarray) -> pd.DataFrame:
    """Held-out rows with their probability: what evaluation and fairness read."""
    df = splits.test.copy()
    df["probability"] = proba
    df[spec.label] = df[spec.label].astype("int64")
    if splits.recent_start is not None:
        df["recent_period"] = np.where(df[EVENT_TS] >= splits.recent_start, "recent", "earlier")
    return df
