"""The serving contract: safe coercions, and 4xx-worthy errors that name the field."""

from __future__ import annotations

import math

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
