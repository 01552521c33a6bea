"""In-processing fairness mitigation: error-rate constraints by iterative reweighting.

Reweighing (mlplatform.training.mitigation) makes the label independent of each protected
attribute in the training data, but it does not look at the model's errors: a group can still
end up with a lower miss rate than the others at the decision threshold. Here the constraint is
on the errors themselves, the rates the fairness gate compares (`spec.fairness.metrics`):

1. fit the family on K folds of the training rows and score each row with the model that did
   not see it (out-of-fold scores: in-sample scores of boosted trees are far too optimistic);
2. per protected attribute, group and gated rate, measure the violation `rate(group) -
   rate(all rows)` at the spec's threshold;
3. move each constraint's Lagrange multiplier by `step * violation` and set every row's weight to
   `base * exp(sum of the multipliers of its groups)` -- for FNR on the positive rows, for FPR
   on the negative rows -- so a group that misses more of its positives gets them weighed up
   and the next fit scores them higher;
4. stop when every training-side gap is under the target, or after `max_rounds`, keeping the
   weights of the round with the smallest largest gap.

This is the exponentiated cost-sensitive form of the reductions approach (Agarwal et al., 2018)
as used for label-bias correction by Jiang & Nachum (2020). The protected attributes are only
used to set training weights: the model's inputs and the single decision threshold stay as they
are, and the gate is unchanged. The test split is never read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlplatform.spec import UseCase
from mlplatform.training.mitigation import protected_groups

MAX_ROUNDS = 5  # each round costs `folds` fits: bounded so a run stays minutes, not hours
FOLDS = 3
STEP = 4.0  # multiplier change per unit of violation: a 0.05 gap moves a weight by ~22%
MAX_MULTIPLIER = 1.5  # |lambda| cap: no group's rows weigh more than e^1.5 = 4.5x their base
TARGET_SHARE = 0.5  # aim at half the allowed gap: the test groups are smaller and noisier

# The rows each rate is measured on (and whose weights its multiplier moves).
_ROWS = {"fnr": (1,), "fpr": (0,), "error_rate": (0, 1)}


@dataclass
class ConstrainedWeights:
    """The weights to train with, and how the constraint rounds went (for the run's log)."""

    weights: np.ndarray
    multipliers: dict[str, float]  # "age_band=<25:fnr" -> lambda of the kept round
    rounds: list[dict[str, float]] = field(default_factory=list)  # per round: "age_band.fnr" gap
    kept_round: int = 0
    target: float = 0.0

    @property
    def gaps(self) -> dict[str, float]:
        """Training-side (out-of-fold) gaps of the kept weights."""
        return self.rounds[self.kept_round]

    @property
    def converged(self) -> bool:
        return max(self.gaps.values(), default=0.0) <= self.target


def error_rates(
    groups: dict[str, np.ndarray],
    y: np.ndarray,
    predicted: np.ndarray,
    metrics: tuple[str, ...],
    min_group_size: int,
) -> tuple[dict[str, float], dict[tuple[str, str, str], float]]:
    """Per gated group its violation `rate(group) - rate(all)`, and per attribute.metric the
    widest gap between two gated groups (what the gate checks, here on training rows).

    A group is gated when it has `min_group_size` rows behind the rate, as in the gate."""
    gaps: dict[str, float] = {}
    violations: dict[tuple[str, str, str], float] = {}
    for metric in metrics:
        on = np.isin(y, _ROWS[metric])
        overall = float(np.mean(predicted[on] != y[on]))
        for attribute, values in groups.items():
            rates = {}
            for g in np.unique(values):
                rows = on & (values == g)
                if rows.sum() >= min_group_size:
                    rates[g] = float(np.mean(predicted[rows] != y[rows]))
            for g, rate in rates.items():
                violations[(attribute, g, metric)] = rate - overall
            gaps[f"{attribute}.{metric}"] = (
                max(rates.values()) - min(rates.values()) if len(rates) > 1 else 0.0
            )
    return gaps, violations


def constrained_weights(
    train: pd.DataFrame,
    y: np.ndarray,
    spec: UseCase,
    oof_scores: Callable[[np.ndarray], np.ndarray],
    base: np.ndarray | None = None,
    max_rounds: int = MAX_ROUNDS,
    step: float = STEP,
    shrink: bool = False,
) -> ConstrainedWeights:
    """Weights under which the out-of-fold error rates of every protected group are close.

    `oof_scores(weights)` must return, for every row of `train`, the probability given by a
    model fitted with `weights` on folds that exclude that row. `base` are the starting
    weights (e.g. reweighing's; 1 when None)."""
    y = np.asarray(y).astype("int64")
    if len(y) != len(train):
        raise ValueError(f"{len(y)} labels for {len(train)} rows")
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
    base = np.ones(len(y)) if base is None else np.asarray(base, dtype="float64")
    cfg = spec.fairness
    groups = protected_groups(train, spec)
    target = TARGET_SHARE * cfg.max_disparity
    lam: dict[tuple[str, str, str], float] = {}
    weights = base.copy()
    result = ConstrainedWeights(weights, {}, target=target)
    best = np.inf
    for r in range(max_rounds):
        predicted = (oof_scores(weights) > spec.selection.threshold).astype("int64")
        gaps, violations = error_rates(groups, y, predicted, cfg.metrics, cfg.min_group_size)
        if shrink:  # scratch variant: shrink each violation by its sampling noise
            violations = _shrunk(violations, groups, y)
        result.rounds.append(gaps)
        worst = max(gaps.values(), default=0.0)
        if worst < best:
            best = worst
            result.weights, result.kept_round = weights, r
            result.multipliers = {f"{a}={g}:{m}": round(v, 4) for (a, g, m), v in lam.items()}
        if worst <= target or r == max_rounds - 1:
            break
        for key, v in violations.items():
            lam[key] = float(np.clip(lam.get(key, 0.0) + step * v, -MAX_MULTIPLIER, MAX_MULTIPLIER))
        weights = _apply(base, lam, groups, y)
    return result


def _shrunk(violations, groups, y):
    out = {}
    for (a, g, m), v in violations.items():
        n = int(((groups[a] == g) & np.isin(y, _ROWS[m])).sum())
        r = 0.5  # conservative binomial variance
        se2 = r * (1 - r) / n
        out[(a, g, m)] = v * v * v / (v * v + se2)
    return out


def _apply(
    base: np.ndarray,
    lam: dict[tuple[str, str, str], float],
    groups: dict[str, np.ndarray],
    y: np.ndarray,
) -> np.ndarray:
    log_factor = np.zeros(len(y))
    for (attribute, g, metric), v in lam.items():
        rows = (groups[attribute] == g) & np.isin(y, _ROWS[metric])
        log_factor[rows] += v
    w = base * np.exp(log_factor)
    # Each class keeps its total weight: the multipliers move weight between the groups of a
    # class, not between the classes, so the overall operating point (and the share of
    # defaults caught) stays where the base weights put it.
    for k in np.unique(y):
        rows = y == k
        w[rows] *= base[rows].sum() / w[rows].sum()
    return w


def fold_ids(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per row, stratified on the label, fixed by `seed`."""
    rng = np.random.default_rng(seed)
    ids = np.empty(len(y), dtype="int64")
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k))
        ids[idx] = np.arange(len(idx)) % folds
    return ids
