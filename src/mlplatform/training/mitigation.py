"""Fairness mitigation before training: reweighing on the protected attributes.

Groups whose default (positive) rate differs from the population's get scores shifted as a
whole, so at one threshold the high-rate group has both more false positives and fewer false
negatives than the others. Reweighing (Kamiran & Calders, 2012) gives every training row a
weight so that, in the weighted data, the label is independent of each protected attribute
while every group keeps its share of rows. The model then stops learning the group's base rate
as a shortcut; features that really predict the label are still used.

With several protected attributes the weights are fitted by raking (iterative proportional
fitting over the attributes' margins) rather than on their intersection, whose cells are too
small to estimate (sex x 5 age bands x 7 education x 4 marriage codes = 280 cells).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlplatform.evaluation.slicing import band_column
from mlplatform.spec import UseCase

MAX_ROUNDS = 50
TOLERANCE = 1e-6


def protected_groups(df: pd.DataFrame, spec: UseCase) -> dict[str, np.ndarray]:
    """Each protected attribute's group label per row (bands computed from their column)."""
    bands = {b.name: b for b in spec.slices.bands}
    groups = {}
    for attribute in spec.slices.protected:
        if attribute in bands:
            values = band_column(df[bands[attribute].column], bands[attribute])
        else:
            values = df[attribute]
        groups[attribute] = values.astype(str).fillna("<missing>").to_numpy()
    return groups


def reweighing_weights(df: pd.DataFrame, y: np.ndarray, spec: UseCase) -> np.ndarray:
    """Row weights (mean 1) under which every protected group has the overall positive rate.

    Each round, for each attribute, the weights of group g with label k are scaled so that
    their weighted count becomes  n(g) * P(k), where n(g) is the group's row count and P(k)
    the overall label share; the targets agree across attributes, so the rounds converge.
    Rounds stop when no cell moves by more than TOLERANCE. Groups with fewer than
    `fairness.min_group_size` rows of either label keep weight 1.
    """
    y = np.asarray(y).astype("int64")
    if len(y) != len(df):
        raise ValueError(f"{len(y)} labels for {len(df)} rows")
    w = np.ones(len(y), dtype="float64")
    if not spec.slices.protected:
        return w
    share = np.bincount(y, minlength=2) / len(y)
    # The gate does not judge groups this small either (their rates are noise).
    min_rows = spec.fairness.min_group_size
    groups = protected_groups(df, spec)
    for _ in range(MAX_ROUNDS):
        moved = 0.0
        for values in groups.values():
            for g in np.unique(values):
                in_g = values == g
                if min(np.sum(in_g & (y == 0)), np.sum(in_g & (y == 1))) < min_rows:
                    continue  # too few rows of a class to estimate its rate: left as is
                size = in_g.sum()  # targets use the raw counts, so group shares are kept
                for k in (0, 1):
                    cell = in_g & (y == k)
                    have = w[cell].sum()
                    factor = size * share[k] / have
                    moved = max(moved, abs(factor - 1.0))
                    w[cell] *= factor
        if moved < TOLERANCE:
            break
    return w * (len(w) / w.sum())
