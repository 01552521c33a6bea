"""Bad training data is refused before any model is fitted, with a message naming the problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlplatform.evaluation.slicing import SliceError, check_slices
from mlplatform.features.tables import EVENT_TS
from mlplatform.training.dataset import TrainingDataError, split
from mlplatform.training.preprocessing import model_inputs


def _frame(spec, n=400, label=None):
    rng = np.random.default_rng(1)
    numeric, categorical = model_inputs(spec)
    df = pd.DataFrame({c: rng.normal(size=n) for c in numeric})
    for c in categorical:
        df[c] = rng.choice(["a", "b"], size=n)
    df[spec.label] = rng.integers(0, 2, size=n) if label is None else label
    df[EVENT_TS] = pd.date_range("2015-01-01", periods=n, freq="D", tz="UTC")
    return df


def test_single_class_label_is_refused(taxi):
    with pytest.raises(TrainingDataError, match="single class"):
        split(_frame(taxi, label=0), taxi)


def test_missing_model_input_is_named(taxi):
    df = _frame(taxi).drop(columns=["fare"])
    with pytest.raises(TrainingDataError, match="fare"):
        split(df, taxi)


def test_time_split_holds_out_most_recent_period(taxi):
    s = split(_frame(taxi), taxi)
    assert s.train[EVENT_TS].max() < s.test[EVENT_TS].min()
    assert s.valid[EVENT_TS].max() < s.test[EVENT_TS].min()
    months = (s.test[EVENT_TS].max() - s.test[EVENT_TS].min()).days / 30.4
    assert 5 <= months <= 6.1


def test_random_split_is_stratified_and_repeatable(credit):
    df = _frame(credit, n=2000)
    a, b = split(df, credit), split(df, credit)
    assert a.test.equals(b.test)
    assert abs(a.test[credit.label].mean() - df[credit.label].mean()) < 0.01


def test_edge_case_matching_nothing_is_refused(taxi):
    df = _frame(taxi)
    df["trip_miles"] = 1.0  # no zero-mile trips
    df["trip_seconds"] = 60.0
    df["payment_type"] = "Cash"
    with pytest.raises(SliceError, match="zero_miles"):
        check_slices(df, taxi, None)
