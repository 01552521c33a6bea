"""The serving contract: safe coercions, and 4xx-worthy errors that name the field."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlplatform.packaging.contract import MAX_INSTANCES, Contract, ContractError, Field

C = Contract((Field("fare", "double"), Field("sex", "string")))


def test_int_for_double_and_number_for_category_are_coerced():
    df = C.parse_v1({"instances": [{"fare": 600, "sex": 1}, {"fare": None, "sex": None}]})
    assert df["fare"].tolist()[0] == 600.0 and math.isnan(df["fare"].tolist()[1])
    assert df["sex"].tolist() == ["1", None]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"instances": [{"fare": "600", "sex": "1"}]}, "instances[0].fare: expected a number"),
        ({"instances": [{"fare": True, "sex": "1"}]}, "instances[0].fare"),
        ({"instances": [{"fare": 1.0}]}, "lacks field(s) ['sex']"),
        ({"instances": [{"fare": 1.0, "sex": "1", "tips": 3}]}, "unknown field(s) ['tips']"),
        ({"instances": []}, "non-empty list"),
        ({"rows": []}, "no 'instances'"),
        ([1, 2], "JSON object"),
        ({"instances": [5]}, "instances[0] must be an object"),
        ({"instances": [{"fare": float("inf"), "sex": "1"}]}, "finite"),
        ({"instances": [{"fare": 1.7e308, "sex": "1"}]}, "fare: 1.7e+308 is out of range"),
        ({"instances": [{"fare": 1.0, "sex": ["a"]}]}, "instances[0].sex: expected text"),
    ],
)
def test_bad_requests_name_the_problem(body, needle):
    with pytest.raises(ContractError) as err:
        C.parse_v1(body)
    assert needle in str(err.value)


def test_request_size_is_bounded():
    with pytest.raises(ContractError, match="batch scoring"):
        C.parse_v1({"instances": [{"fare": 1.0, "sex": "1"}] * (MAX_INSTANCES + 1)})


def test_v2_tensors():
    df = C.parse_v2([("fare", "FP64", [1.0, 2]), ("sex", "BYTES", ["1", "2"])])
    assert df["fare"].tolist() == [1.0, 2.0]
    with pytest.raises(ContractError, match="differ in length"):
        C.parse_v2([("fare", "FP64", [1.0]), ("sex", "BYTES", ["1", "2"])])
    with pytest.raises(ContractError, match=r"missing input tensor\(s\) \['sex'\]"):
        C.parse_v2([("fare", "FP64", [1.0])])


def _per_value(contract: Contract, frame: pd.DataFrame):
    """What batch scoring computed before `columns_of_frame`: every value through the v2 path."""
    return contract.columns_v2([(c, "", frame[c].tolist()) for c in contract.names], None)


NUMBER_COLUMNS = {
    "floats": pd.Series([1.5, np.nan, -0.0, 1e15, -3.0]),
    "float32": pd.Series([1.5, np.nan, 2.25, 0.1, 7], dtype="float32"),
    "ints": pd.Series([1, 2, -3, 10**15, 0], dtype="int64"),
    "uints": pd.Series([1, 2, 3, 4, 5], dtype="uint8"),
    "nullable ints": pd.Series([1, None, 3, -(10**15), 5], dtype="Int64"),
    "nullable floats": pd.Series([1.5, None, 3.0, 4.0, 5.0], dtype="Float64"),
    "numbers as objects": pd.Series([1, 2.5, None, np.float64(4), 5], dtype=object),
    "infinite": pd.Series([1.0, 2.0, np.inf, 4.0, 5.0]),
    "too large": pd.Series([1.0, 2.0, 3.0, 1e16, 5.0]),
    "too large int": pd.Series([1, 2, 3, 10**15 + 1, 5], dtype="int64"),
    "too large nullable": pd.Series([1, None, 3, 10**16, 5], dtype="Int64"),
    "infinite nullable": pd.Series([1.0, None, float("-inf"), 4.0, 5.0], dtype="Float64"),
    "booleans": pd.Series([True, False, True, False, True]),
    "nullable booleans": pd.Series([True, None, True, False, True], dtype="boolean"),
    "text": pd.Series(["1", "2", "3", "4", "5"]),
    "times": pd.Series(pd.to_datetime([1, 2, 3, 4, 5], unit="s")),
}
TEXT_COLUMNS = {
    "text": pd.Series(["Cash", None, "Credit Card", np.nan, "x"]),
    "text with pd.NA": pd.Series(["a", pd.NA, "b", "c", "d"], dtype=object),
    "all null": pd.Series([None, np.nan, None, None, None], dtype=object),
    "numpy str": pd.Series([np.str_("a"), "b", "c", "d", "e"], dtype=object),
    "int codes": pd.Series([1, 2, 2, 1, 10**12], dtype="int64"),
    "float codes": pd.Series([1.0, 2.5, np.nan, -0.0, np.inf]),
    "nullable int codes": pd.Series([1, None, 2, 1, 3], dtype="Int64"),
    "mixed": pd.Series(["a", 1, 2.5, None, "b"], dtype=object),
    "NaT among text": pd.Series(["a", pd.NaT, "b", "c", "d"], dtype=object),
    "booleans": pd.Series([True, False, True, False, True]),
    "bool among text": pd.Series(["a", True, "b", "c", "d"], dtype=object),
    "string dtype": pd.Series(["a", None, "b", "c", "d"], dtype="string"),
    "category dtype": pd.Series(["a", "b", None, "a", "b"], dtype="category"),
}


def _outcome(fn):
    try:
        return "ok", fn()
    except ContractError as exc:
        return "error", str(exc)


@pytest.mark.parametrize(
    ("kind", "name", "column"),
    [("double", n, c) for n, c in NUMBER_COLUMNS.items()]
    + [("string", n, c) for n, c in TEXT_COLUMNS.items()],
)
def test_a_whole_chunk_is_parsed_exactly_as_value_by_value(kind, name, column):
    """Batch scoring's column-at-a-time parse gives the per-value parse's arrays (dtype,
    values, NaN/None, the very objects' text) or its error message, for every kind of column."""
    contract = Contract((Field("x", kind), Field("other", "double")))
    frame = pd.DataFrame({"x": column, "other": np.arange(5.0)})
    want, got = _outcome(lambda: _per_value(contract, frame)), _outcome(
        lambda: contract.columns_of_frame(frame)
    )
    assert got[0] == want[0], (name, got, want)
    if want[0] == "error":
        assert got[1] == want[1]
        return
    for col in contract.names:
        w, g = want[1][col], got[1][col]
        assert g.dtype == w.dtype, (name, col)
        if w.dtype == object:
            assert [type(v) for v in g] == [type(v) for v in w] and list(g) == list(w), name
        else:
            np.testing.assert_array_equal(g, w)  # NaN where NaN, -0.0 kept
            assert (np.signbit(g) == np.signbit(w)).all(), name


def test_a_whole_chunk_does_not_write_into_the_frame():
    contract = Contract((Field("x", "double"), Field("t", "string")))
    frame = pd.DataFrame({"x": [1.0, 2.0], "t": ["a", None]})
    cols = contract.columns_of_frame(frame)
    cols["x"][0], cols["t"][0] = 99.0, "changed"
    assert frame["x"][0] == 1.0 and frame["t"][0] == "a"
    with pytest.raises(ContractError, match=r"missing input tensor\(s\) \['t'\]"):
        contract.columns_of_frame(frame.drop(columns="t"))
