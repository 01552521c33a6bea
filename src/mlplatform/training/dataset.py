"""Training data: checks before training and a time-aware (or stratified random) split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlplatform.features.tables import EVENT_TS
from mlplatform.spec import UseCase
from mlplatform.training.preprocessing import model_inputs


class TrainingDataError(ValueError):
    """The training set cannot produce a meaningful model; the message says why."""


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    valid: pd.DataFrame  # for early stopping, taken from the training period
    test: pd.DataFrame  # held out: the most recent period under a time split
    recent_start: pd.Timestamp | None  # first event time of the recent (held-out) period

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def check_training_set(df: pd.DataFrame, spec: UseCase) -> None:
    """Refuse data that would train a meaningless model, naming the problem."""
    numeric, categorical = model_inputs(spec)
    missing = [c for c in [spec.label, *numeric, *categorical] if c not in df.columns]
    if missing:
        raise TrainingDataError(
            f"the training set lacks columns {missing} named by usecases/{spec.name}.yaml; "
            "rebuild features (`mlplatform features build`) or fix the spec"
        )
    if df.empty:
        raise TrainingDataError("the training set is empty: no accepted rows")
    labels = set(pd.unique(df[spec.label].dropna()))
    if len(labels) < 2:
        raise TrainingDataError(
            f"label {spec.label!r} has a single class {sorted(labels)} in {len(df)} rows: "
            "a classifier needs both classes"
        )
    if not labels <= {0, 1}:
        raise TrainingDataError(
            f"label {spec.label!r} must be 0/1 here, found {sorted(map(str, labels))[:10]}: "
            "training sets come from `mlplatform features build`, which maps the spec's "
            "classes (label: {column, positive}) to 0/1"
        )


def split(df: pd.DataFrame, spec: UseCase) -> Splits:
    check_training_set(df, spec)
    cfg = spec.split
    if cfg.strategy == "time":
        df = df.sort_values(EVENT_TS, kind="stable").reset_index(drop=True)
        months = spec.slices.recent_period.months if spec.slices.recent_period else 6
        start = df[EVENT_TS].max() - pd.DateOffset(months=months)
        test = df[df[EVENT_TS] > start]
        rest = df[df[EVENT_TS] <= start]
        n_valid = int(len(rest) * cfg.validation_fraction)
        train, valid = rest.iloc[: len(rest) - n_valid], rest.iloc[len(rest) - n_valid :]
        recent_start = test[EVENT_TS].min() if len(test) else None
    else:
        rng = np.random.default_rng(cfg.seed)
        test_idx, valid_idx = [], []
        for _, group in df.groupby(spec.label):  # stratified: same label rate in every part
            idx = rng.permutation(group.index.to_numpy())
            n_test = int(round(len(idx) * cfg.test_fraction))
            n_valid = int(round((len(idx) - n_test) * cfg.validation_fraction))
            test_idx.extend(idx[:n_test])
            valid_idx.extend(idx[n_test : n_test + n_valid])
        test, valid = df.loc[sorted(test_idx)], df.loc[sorted(valid_idx)]
        train = df.drop(index=test.index.union(valid.index))
        recent_start = None
    for name, part in (("train", train), ("test", test)):
        if part[spec.label].nunique() < 2:
            raise TrainingDataError(
                f"the {name} split has a single class; more data or another split is needed"
            )
    return Splits(
        train.reset_index(drop=True),
        valid.reset_index(drop=True),
        test.reset_index(drop=True),
        recent_start,
    )
