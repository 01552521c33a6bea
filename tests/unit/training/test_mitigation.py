"""Reweighing: in the weighted training rows the label no longer depends on any protected
attribute, every group keeps its share, and groups too small to judge are left alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlplatform.training.mitigation import protected_groups, reweighing_weights


@pytest.fixture
def rows(credit):
    rng = np.random.default_rng(7)
    n = 6000
    df = pd.DataFrame(
        {
            "sex": rng.choice(["1", "2"], n),
            "age": rng.integers(21, 70, n),
            "education": rng.choice(["1", "2", "3"], n, p=[0.4, 0.45, 0.15]),
            "marriage": rng.choice(["1", "2"], n),
        }
    )
    # Default rate depends on age and education: the shortcut reweighing must remove.
    p = 0.15 + 0.15 * (df["age"] < 25) + 0.1 * (df["education"] == "3")
    y = (rng.random(n) < p).astype("int64").to_numpy()
    return df, y


def _rate(w, y, mask):
    return float((w * y)[mask].sum() / w[mask].sum())


def test_each_protected_group_gets_the_overall_positive_rate(rows, credit):
    df, y = rows
    w = reweighing_weights(df, y, credit)
    overall = y.mean()
    for attribute, values in protected_groups(df, credit).items():
        for g in np.unique(values):
            assert _rate(w, y, values == g) == pytest.approx(overall, abs=1e-4), (attribute, g)
    assert w.mean() == pytest.approx(1.0)
    assert (w > 0).all()


def test_group_shares_are_kept(rows, credit):
    df, y = rows
    w = reweighing_weights(df, y, credit)
    for values in protected_groups(df, credit).values():
        for g in np.unique(values):
            m = values == g
            assert w[m].sum() / w.sum() == pytest.approx(m.mean(), abs=1e-3)


def test_unweighted_rates_really_differ(rows, credit):
    df, y = rows  # the fixture is only a test of reweighing if the groups differ to begin with
    young = protected_groups(df, credit)["age_band"] == "<25"
    assert _rate(np.ones(len(y)), y, young) - y.mean() > 0.08


def test_a_tiny_one_class_group_does_not_distort_the_weights(rows, credit):
    df, y = rows
    df, y = df.copy(), y.copy()
    df.loc[df.index[:30], "education"] = "6"  # 30 rows, all defaults: under min_group_size
    y[:30] = 1
    w = reweighing_weights(df, y, credit)
    assert np.isfinite(w).all() and w.min() > 0.2 and w.max() < 5
    sex = protected_groups(df, credit)["sex"]
    for g in np.unique(sex):
        assert _rate(w, y, sex == g) == pytest.approx(y.mean(), abs=1e-4)


def test_no_protected_attributes_means_no_weights(taxi):
    df = pd.DataFrame({"x": [1, 2, 3]})
    assert reweighing_weights(df, np.array([0, 1, 0]), taxi).tolist() == [1.0, 1.0, 1.0]


def test_labels_must_match_rows(rows, credit):
    df, y = rows
    with pytest.raises(ValueError, match="labels for"):
        reweighing_weights(df, y[:-1], credit)
