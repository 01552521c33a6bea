"""The fairness gate: per-group error rates on the spec's protected attributes.

For every protected attribute and every rate of `spec.fairness.metrics`, the groups' rates are
compared; the gap between the worst and the best group may not exceed
`spec.fairness.max_disparity`. Groups smaller than `min_group_size` are reported but not
gated: a rate over a handful of rows is noise, and a gate that trips on noise gets ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from mlplatform.evaluation.tfma_eval import EvaluationResult, markdown_table
from mlplatform.spec import UseCase

# The rates the spec may name, from the columns of the evaluation table.
RATES = {
    "fpr": lambda t: t["fpr"],
    "fnr": lambda t: t["fnr"],
    "error_rate": lambda t: 1.0 - t["accuracy"],
}
GROUP_COLUMNS = ["attribute", "metric", "group", "example_count", "rate", "gated", "note"]


@dataclass(frozen=True)
class DisparityCheck:
    """One attribute x metric: the widest gap between two gated groups."""

    attribute: str
    metric: str
    disparity: float | None  # None when fewer than two groups are large enough to compare
    worst_group: str | None
    worst_rate: float | None
    best_group: str | None
    best_rate: float | None
    allowed: float

    @property
    def passed(self) -> bool:
        return self.disparity is None or self.disparity <= self.allowed

    def message(self) -> str:
        """e.g. "sex: fnr differs by 0.142 between '2' (0.512) and '1' (0.370); allowed 0.100"."""
        if self.disparity is None:
            return f"{self.attribute}: {self.metric} not compared (fewer than two large groups)"
        return (
            f"{self.attribute}: {self.metric} differs by {self.disparity:.3f} between "
            f"{self.worst_group!r} ({self.worst_rate:.3f}) and {self.best_group!r} "
            f"({self.best_rate:.3f}); allowed {self.allowed:.3f}"
        )


@dataclass(frozen=True)
class FairnessReport:
    """Per-group rates (`groups`, one row per attribute x metric x group) and the verdict."""

    groups: pd.DataFrame
    checks: list[DisparityCheck]
    max_disparity: float
    min_group_size: int

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[str]:
        """One message per attribute x metric over the allowed disparity."""
        return [c.message() for c in self.checks if not c.passed]

    def to_markdown(self) -> str:
        """The verdict, the disparities and the per-group table."""
        verdict = "passed" if self.passed else "FAILED"
        lines = [
            f"Fairness gate {verdict}: largest allowed gap {self.max_disparity:.3f}; groups "
            f"with fewer than {self.min_group_size} rows behind a rate (positives for FNR, "
            "negatives for FPR) are listed, not gated.",
            "",
        ]
        lines += [f"- {'ok' if c.passed else 'FAIL'}: {c.message()}" for c in self.checks]
        lines += ["", markdown_table(self.groups)]
        return "\n".join(lines)


def fairness_report(table: pd.DataFrame | EvaluationResult, spec: UseCase) -> FairnessReport:
    """Compare the groups of every protected attribute on every rate the spec names.

    `table` is `EvaluationResult.table` (or the result itself); each protected attribute must
    be one of its slice columns. A group whose rate is undefined (e.g. FPR of a group without
    negatives) is listed and not gated, like a small one.
    """
    if isinstance(table, EvaluationResult):
        table = table.table
    cfg = spec.fairness
    rows: list[dict] = []
    checks: list[DisparityCheck] = []
    for attribute in spec.slices.protected:
        groups = table[table["slice_column"] == attribute]
        if groups.empty:
            raise ValueError(
                f"protected attribute {attribute!r} is not a slice of the evaluation; "
                f"slices are {sorted(set(table['slice_column']))}"
            )
        for metric in cfg.metrics:
            rates = RATES[metric](groups)
            gated = []
            for (_, g), rate in zip(groups.iterrows(), rates, strict=True):
                rate = float(rate)
                support = _support(g, metric)
                if support < cfg.min_group_size:
                    note = (
                        f"{support} {_DENOMINATOR[metric]}, under {cfg.min_group_size}: not gated"
                    )
                elif math.isnan(rate):
                    note = "rate undefined: not gated"
                else:
                    note = ""
                    gated.append((g["slice_value"], rate))
                rows.append(
                    {
                        "attribute": attribute,
                        "metric": metric,
                        "group": g["slice_value"],
                        "example_count": int(g["example_count"]),
                        "rate": rate,
                        "gated": not note,
                        "note": note,
                    }
                )
            checks.append(_check(attribute, metric, gated, cfg.max_disparity))
    return FairnessReport(
        pd.DataFrame(rows, columns=GROUP_COLUMNS), checks, cfg.max_disparity, cfg.min_group_size
    )


# A rate is only as solid as its denominator: FNR is measured on a group's positives, FPR on
# its negatives, so a large group with five defaults still has a noisy FNR.
_DENOMINATOR = {"fpr": "negatives", "fnr": "positives", "error_rate": "rows"}


def _support(g: pd.Series, metric: str) -> int:
    n = float(g["example_count"])
    positives = n * float(g["mean_label"]) if g["mean_label"] == g["mean_label"] else 0.0
    if metric == "fnr":
        return int(round(positives))
    if metric == "fpr":
        return int(round(n - positives))
    return int(n)


def _check(
    attribute: str, metric: str, gated: list[tuple[str, float]], allowed: float
) -> DisparityCheck:
    if len(gated) < 2:
        return DisparityCheck(attribute, metric, None, None, None, None, None, allowed)
    # Every rate here is an error rate: the highest is the worst-served group.
    worst = max(gated, key=lambda g: g[1])
    best = min(gated, key=lambda g: g[1])
    return DisparityCheck(
        attribute, metric, worst[1] - best[1], worst[0], worst[1], best[0], best[1], allowed
    )
