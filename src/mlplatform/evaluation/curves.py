"""A candidate's ROC curve and confusion matrix on its held-out rows, in the shapes KFP's
ClassificationMetrics artifact draws (the pipeline UI's ROC and confusion views)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curves:
    fpr: list[float]
    tpr: list[float]
    thresholds: list[float]
    confusion: list[list[int]]  # rows: true 0, 1; columns: predicted 0, 1
    categories: tuple[str, str]


def classification_curves(
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    categories: tuple[str, str] = ("0", "1"),
    max_points: int = 200,
) -> Curves:
    """ROC points (at most `max_points`, the curve's ends kept) and the confusion matrix at
    the threshold the model serves with."""
    from sklearn.metrics import confusion_matrix, roc_curve

    y = np.asarray(labels, dtype=int)
    p = np.asarray(probabilities, dtype=float)
    fpr, tpr, thr = roc_curve(y, p)
    thr = np.minimum(thr, 1.0)  # sklearn puts +inf first; KFP wants a finite number
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    matrix = confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1])
    return Curves(
        fpr.tolist(), tpr.tolist(), thr.tolist(), matrix.tolist(), tuple(categories)
    )
