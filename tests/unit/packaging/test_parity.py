"""One answer to "do these two sides score the same rows the same?" for the scoring check,
`package verify` and the edge export."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlplatform.packaging.parity import compare


def test_the_largest_difference_and_its_row_decide():
    match = compare(np.array([0.1, 0.5, 0.9]), np.array([0.1, 0.5003, 0.9001]), 1e-3)
    assert match.passed and match.rows == 3 and match.worst_row == 1
    assert match.max_abs_diff == pytest.approx(3e-4)
    assert not compare(np.array([0.1]), np.array([0.2]), 1e-3).passed


def test_a_nan_on_one_side_is_a_difference_and_on_both_is_not():
    # An exported model that answers NaN must not pass parity (|a - b| would be NaN).
    one_side = compare(np.array([0.1, 0.2]), np.array([0.1, math.nan]), 1e-3)
    assert not one_side.passed and one_side.worst_row == 1 and math.isinf(one_side.max_abs_diff)
    assert compare(np.array([math.nan, 0.2]), np.array([math.nan, 0.2]), 0.0).passed


def test_different_lengths_are_refused():
    with pytest.raises(ValueError, match="1 probabilities for 2 rows"):
        compare(np.array([0.1, 0.2]), np.array([0.1]), 0.0)
    assert compare(np.array([]), np.array([]), 0.0).passed
