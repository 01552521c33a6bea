"""The server's fast path scores exactly what the pipeline scores.

The model server hands the packaged model typed column arrays (`Columns`) instead of a
DataFrame, and the logistic family computes sklearn's binary probability itself. Both exist
only for speed, so both must give the same numbers, bit for bit, as the slow path.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlplatform.packaging.contract import Contract, Field
from mlplatform.training.columns import Columns
from mlplatform.training.families import LogisticFamily
from mlplatform.training.preprocessing import Preprocessor, model_inputs


def _rows(spec, n: int, seed: int = 3, unseen: bool = True) -> pd.DataFrame:
    """Signature-typed rows with nulls and (`unseen`) a category the training never saw."""
    rng = np.random.default_rng(seed)
    numeric, categorical = model_inputs(spec)
    df = pd.DataFrame({c: rng.normal(10, 5, size=n) for c in numeric})
    for c in categorical:
        df[c] = pd.Series(rng.choice(["a", "b", "c"], size=n), dtype=object)
    df.loc[::7, numeric[0]] = np.nan
    df.loc[::5, categorical[0]] = None
    if unseen:
        df.loc[3, categorical[-1]] = "never seen"
    return df


def _contract(spec) -> Contract:
    numeric, categorical = model_inputs(spec)
    return Contract(
        tuple([Field(c, "double") for c in numeric] + [Field(c, "string") for c in categorical])
    )


@pytest.fixture(scope="module")
def fitted(taxi):
    train = _rows(taxi, 400, seed=1, unseen=False)
    pre = Preprocessor.fit(train, taxi)
    y = (train[model_inputs(taxi)[0][1]] > 10).astype(int).to_numpy()
    return taxi, pre, LogisticFamily(pre).fit(train, y, None, None)


def test_columns_and_frame_give_identical_model_inputs(fitted):
    spec, pre, _ = fitted
    rows = _rows(spec, 50)
    cols = _contract(spec).columns_v1({"instances": rows.to_dict("records")})
    frame = cols.to_frame()
    for transform in (pre.numeric_raw, pre.numeric_scaled, pre.codes, pre.one_hot):
        a, b = transform(cols), transform(frame)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)  # NaN in the same places counts as equal
    assert np.isnan(pre.numeric_raw(cols)[0, 0])
    assert pre.codes(cols)[0, 0] == 0 and pre.codes(cols)[3, -1] == 0  # null and unseen: OOV


def test_logistic_probability_is_sklearns_to_the_bit(fitted):
    spec, pre, fam = fitted
    rows = _rows(spec, 200, seed=9)
    expected = fam.model.predict_proba(pre.one_hot(rows))[:, 1]
    got = fam.predict_proba(rows)
    assert got.dtype == np.float64 and got.shape == (200,)
    assert (got == expected).all()
    one = Columns({c: rows[c].to_numpy()[:1] for c in rows.columns})
    assert fam.predict_proba(one)[0] == expected[0]


def test_non_finite_inputs_take_sklearns_own_path_and_error(fitted):
    spec, pre, fam = fitted
    rows = _rows(spec, 5)
    rows[model_inputs(spec)[0][0]] = np.inf  # the contract refuses this; the model must too
    with pytest.raises(ValueError, match="infinity"):
        fam.predict_proba(rows)


def test_columns_records_and_frame_keep_every_value():
    cols = Columns({"fare": np.array([1.5, math.nan]), "kind": np.array(["a", None], dtype=object)})
    assert len(cols) == 2 and cols.columns == ["fare", "kind"] and "fare" in cols
    records = cols.records()
    assert records[0] == {"fare": 1.5, "kind": "a"}
    assert math.isnan(records[1]["fare"]) and records[1]["kind"] is None
    frame = cols.to_frame()
    assert frame["fare"].dtype == np.float64 and frame["kind"].tolist() == ["a", None]
    with pytest.raises(ValueError, match="differ in length"):
        Columns({"a": np.zeros(2), "b": np.zeros(3)})


def test_timed_requests_carry_the_rows_as_a_client_sends_them(taxi):
    """Selection and the battery time one-row v1 bodies (packaging.request_scoring): each must
    hold its row's values, with nulls as JSON null, and pass the contract unchanged."""
    from mlplatform.packaging.request_scoring import single_row_bodies

    rows = _rows(taxi, 6)
    bodies = single_row_bodies(rows, 8)
    assert len(bodies) == 8 and bodies[6] == bodies[0]  # cycles through the rows
    numeric, categorical = model_inputs(taxi)
    assert bodies[0]["instances"][0][numeric[0]] is None  # NaN goes out as null
    assert bodies[5]["instances"][0][categorical[0]] is None
    contract = _contract(taxi)
    for i, body in enumerate(bodies[:6]):
        parsed = contract.columns_v1(body).to_frame()
        pd.testing.assert_frame_equal(parsed, rows.iloc[[i]].reset_index(drop=True))
