"""How far one side's probabilities are from another's on the same rows.

Three checks ask this question of an artifact: the scoring check (the serving side against
packaging), `mlplatform package verify` (a rebuilt environment against this one) and the edge
export (the exported model against the pyfunc). They share one answer, so a NaN on one side
only always counts as a difference and a NaN on both sides never does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Parity:
    rows: int
    max_abs_diff: float
    worst_row: int  # where the largest difference is (0 when there are no rows)
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def compare(expected: np.ndarray, got: np.ndarray, tolerance: float) -> Parity:
    """The largest absolute difference between two probability vectors of the same rows."""
    expected = np.asarray(expected, dtype="float64").ravel()
    got = np.asarray(got, dtype="float64").ravel()
    if got.shape != expected.shape:
        raise ValueError(f"{len(got)} probabilities for {len(expected)} rows")
    diff = np.abs(got - expected)
    diff[np.isnan(got) != np.isnan(expected)] = np.inf
    diff[np.isnan(got) & np.isnan(expected)] = 0.0
    worst = int(np.argmax(diff)) if len(diff) else 0
    return Parity(
        rows=len(expected),
        max_abs_diff=float(diff[worst]) if len(diff) else 0.0,
        worst_row=worst,
        tolerance=float(tolerance),
    )
