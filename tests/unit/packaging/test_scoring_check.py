"""The packed scoring check: what it stores, and when it calls two sets of scores different."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mlplatform.packaging import scoring_check as sc


def _check(probability, tolerance=1e-9):
    return {"rows": [{}] * len(probability), "probability": probability, "tolerance": tolerance}


def test_reference_is_json_with_nulls_for_missing_values(tmp_path):
    rows = pd.DataFrame(
        {"fare": [1.5, math.nan] * 40, "kind": pd.Series(["a", None] * 40, dtype=object)}
    )
    check = sc.reference(rows, np.linspace(0, 1, 80), "xgboost")
    assert len(check["rows"]) == len(check["probability"]) == sc.MAX_ROWS
    assert check["rows"][1] == {"fare": None, "kind": None}
    assert check["tolerance"] == sc.DEFAULT_TOLERANCE
    assert sc.reference(rows, np.zeros(80), "keras")["tolerance"] == sc.TOLERANCE["keras"]
    sc.write(tmp_path, check)
    assert sc.read(tmp_path) == json.loads(json.dumps(check))
    assert sc.read(tmp_path / "elsewhere") is None  # packaged before checks existed


def test_equal_scores_pass_and_a_difference_names_the_row():
    check = _check([0.1, 0.5, 0.9])
    assert sc.enforce(check, np.array([0.1, 0.5, 0.9])).max_abs_diff == 0.0
    result = sc.compare(check, np.array([0.1, 0.5 + 1e-4, 0.9]))
    assert not result.passed and result.worst_row == 1
    with pytest.raises(sc.ScoringMismatch, match="reference row 1"):
        sc.enforce(check, np.array([0.1, 0.5 + 1e-4, 0.9]))
    assert sc.compare(_check([0.5], 1e-3), np.array([0.5005])).passed


def test_a_nan_where_a_score_was_expected_fails_and_a_short_answer_is_refused():
    assert not sc.compare(_check([0.1, 0.2]), np.array([0.1, math.nan])).passed
    with pytest.raises(sc.ScoringMismatch, match="1 probabilities for 2 rows of the reference"):
        sc.compare(_check([0.1, 0.2]), np.array([0.1]))
