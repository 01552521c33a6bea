"""The fairness gate: per-group error rates on protected attributes, decided with confidence.

For every protected attribute and every rate of `spec.fairness.metrics` the gap between the
worst- and the best-served group is compared with `max_disparity`, through its confidence
interval rather than its point estimate (ADR 0025):

- FAIL when the whole interval lies above `max_disparity` (the gap is shown to exceed it);
- PASS when the whole interval lies at or below it;
- INCONCLUSIVE otherwise, with the test rows a conclusive answer would need.

Intervals come from a stratified bootstrap over the evaluation rows: each group's positives and
negatives are resampled apart, so a group's error count is binomial around its observed rate and
is drawn as such (the same distribution as resampling the rows, without the rows). The level is
`fairness.confidence`, corrected across all checks with Holm's step-down. A group with fewer
than `min_group_size` rows behind a rate (positives for FNR, negatives for FPR) is reported as
too small and judged with the other small groups of its attribute merged, never dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

from mlplatform.evaluation.tfma_eval import EvaluationResult, markdown_table
from mlplatform.spec import UseCase

GROUP_COLUMNS = [
    "attribute", "metric", "group", "example_count", "support", "rate", "rate_low",
    "rate_high", "judged_as", "note",
]
MERGED = "small groups merged"
# A rate is only as solid as its denominator: FNR is measured on a group's positives, FPR on
# its negatives, so a large group with five defaults still has a noisy FNR.
_DENOMINATOR = {"fpr": "negatives", "fnr": "positives", "error_rate": "rows"}


class Verdict(StrEnum):
    PASS = "pass"
    INCONCLUSIVE = "inconclusive"
    FAIL = "fail"


@dataclass(frozen=True)
class GroupCounts:
    """What a group's rates rest on: its positives and negatives and the errors among them."""

    name: str
    positives: int
    negatives: int
    false_negatives: int
    false_positives: int

    @property
    def rows(self) -> int:
        return self.positives + self.negatives

    def support(self, metric: str) -> int:
        return {"fnr": self.positives, "fpr": self.negatives, "error_rate": self.rows}[metric]

    def rate(self, metric: str) -> float:
        n = self.support(metric)
        if n == 0:
            return float("nan")
        errors = {
            "fnr": self.false_negatives,
            "fpr": self.false_positives,
            "error_rate": self.false_negatives + self.false_positives,
        }[metric]
        return errors / n

    def __add__(self, other: GroupCounts) -> GroupCounts:
        return GroupCounts(
            MERGED,
            self.positives + other.positives,
            self.negatives + other.negatives,
            self.false_negatives + other.false_negatives,
            self.false_positives + other.false_positives,
        )


@dataclass
class DisparityCheck:
    """One attribute x metric: the gap between the worst and best judged group, its interval
    and the verdict."""

    attribute: str
    metric: str
    allowed: float
    gap: float | None = None
    low: float | None = None
    high: float | None = None
    worst_group: str | None = None
    worst_rate: float | None = None
    best_group: str | None = None
    best_rate: float | None = None
    verdict: Verdict = Verdict.INCONCLUSIVE
    level: float | None = None  # the (Holm-corrected) confidence of the interval shown
    rows: int = 0  # evaluation rows behind the check
    rows_needed: int | None = None  # INCONCLUSIVE: about this many for a conclusive answer
    note: str = ""
    p_exceeds: float = 1.0  # bootstrap share of gaps <= allowed (small: the gap exceeds it)
    p_within: float = 1.0  # bootstrap share of gaps > allowed (small: the gap is within it)
    boot: np.ndarray | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        """Not shown to exceed the allowed gap (PASS or INCONCLUSIVE)."""
        return self.verdict is not Verdict.FAIL

    def message(self) -> str:
        """e.g. "age_band: fnr gap 0.118 [0.082, 0.219] between '>=55' (0.30) and ... : FAIL"."""
        if self.gap is None:
            return f"{self.attribute}: {self.metric} not compared ({self.note}): inconclusive"
        text = (
            f"{self.attribute}: {self.metric} gap {self.gap:.3f} "
            f"[{self.low:.3f}, {self.high:.3f}] ({self.level:.1%} interval) between "
            f"{self.worst_group!r} ({self.worst_rate:.3f}) and {self.best_group!r} "
            f"({self.best_rate:.3f}); allowed {self.allowed:.3f}: {self.verdict.value.upper()}"
        )
        if self.verdict is Verdict.INCONCLUSIVE:
            need = (
                f"about {self.rows_needed:,} test rows would decide it (now {self.rows:,})"
                if self.rows_needed
                else "no sample size decides a gap that sits on the limit"
            )
            text += f"; {need}"
        return text


@dataclass(frozen=True)
class FairnessReport:
    """Per-group rates with intervals (`groups`), the checks and the overall verdict."""

    groups: pd.DataFrame
    checks: list[DisparityCheck]
    max_disparity: float
    min_group_size: int
    confidence: float

    @property
    def verdict(self) -> Verdict:
        if any(c.verdict is Verdict.FAIL for c in self.checks):
            return Verdict.FAIL
        if all(c.verdict is Verdict.PASS for c in self.checks):
            return Verdict.PASS
        return Verdict.INCONCLUSIVE

    @property
    def passed(self) -> bool:
        """Shown to be within the allowed gap everywhere (PASS)."""
        return self.verdict is Verdict.PASS

    @property
    def failures(self) -> list[str]:
        """One message per check that is not PASS (FAIL and INCONCLUSIVE alike)."""
        return [c.message() for c in self.checks if c.verdict is not Verdict.PASS]

    def summary(self) -> str:
        counts = {v: sum(c.verdict is v for c in self.checks) for v in Verdict}
        return (
            f"{self.verdict.value.upper()}: {counts[Verdict.PASS]} pass, "
            f"{counts[Verdict.INCONCLUSIVE]} inconclusive, {counts[Verdict.FAIL]} fail of "
            f"{len(self.checks)} checks (gap <= {self.max_disparity:.3f}, "
            f"{self.confidence:.0%} intervals, Holm-corrected)"
        )

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict.value,
            "passed": self.passed,
            "failures": self.failures,
            "checks": [
                {
                    k: (v.value if isinstance(v, Verdict) else v)
                    for k, v in c.__dict__.items()
                    if k != "boot"
                }
                for c in self.checks
            ],
        }

    def to_markdown(self) -> str:
        lines = [
            f"Fairness gate {self.summary()}. A check FAILs when its whole interval lies above "
            "the allowed gap, PASSes when it lies at or below, and is INCONCLUSIVE otherwise; "
            f"groups with fewer than {self.min_group_size} rows behind a rate (positives for "
            "FNR, negatives for FPR) are judged merged with the other small groups.",
            "",
        ]
        lines += [f"- {c.message()}" for c in self.checks]
        lines += ["", markdown_table(self.groups)]
        return "\n".join(lines)


def group_counts(table: pd.DataFrame, attribute: str) -> list[GroupCounts]:
    """Each group's counts from the evaluation table (example_count, mean_label, fnr, fpr)."""
    groups = table[table["slice_column"] == attribute]
    out = []
    for _, g in groups.iterrows():
        n = int(g["example_count"])
        mean = float(g["mean_label"]) if g["mean_label"] == g["mean_label"] else 0.0
        pos = int(round(n * mean))
        neg = n - pos
        fnr = float(g["fnr"]) if g["fnr"] == g["fnr"] else 0.0
        fpr = float(g["fpr"]) if g["fpr"] == g["fpr"] else 0.0
        out.append(GroupCounts(str(g["slice_value"]), pos, neg, round(fnr * pos), round(fpr * neg)))
    return out


def fairness_report(
    table: pd.DataFrame | EvaluationResult, spec: UseCase, seed: int | None = None
) -> FairnessReport:
    """Judge every protected attribute x metric of the spec on an evaluation table
    (`EvaluationResult.table`); each protected attribute must be one of its slice columns."""
    if isinstance(table, EvaluationResult):
        table = table.table
    counts = {}
    for attribute in spec.slices.protected:
        if not (table["slice_column"] == attribute).any():
            raise ValueError(
                f"protected attribute {attribute!r} is not a slice of the evaluation; "
                f"slices are {sorted(set(table['slice_column']))}"
            )
        counts[attribute] = group_counts(table, attribute)
    return judge(counts, spec, seed)


def judge(
    counts: dict[str, list[GroupCounts]], spec: UseCase, seed: int | None = None
) -> FairnessReport:
    """The checks and verdict for per-attribute group counts (what the bench simulates)."""
    cfg = spec.fairness
    rng = np.random.default_rng(cfg.seed if seed is None else seed)
    rows: list[dict] = []
    checks: list[DisparityCheck] = []
    for attribute, groups in counts.items():
        for metric in cfg.metrics:
            check, group_rows = _check(attribute, metric, groups, spec, rng)
            checks.append(check)
            rows += group_rows
    _holm(checks, (1.0 - cfg.confidence) / 2)
    for c in checks:
        _finish(c)
    return FairnessReport(
        pd.DataFrame(rows, columns=GROUP_COLUMNS),
        checks,
        cfg.max_disparity,
        cfg.min_group_size,
        cfg.confidence,
    )


def _check(attribute, metric, groups, spec, rng) -> tuple[DisparityCheck, list[dict]]:
    cfg = spec.fairness
    check = DisparityCheck(attribute, metric, cfg.max_disparity)
    check.rows = sum(g.rows for g in groups)
    small = [g for g in groups if 0 < g.support(metric) < cfg.min_group_size]
    judged = [g for g in groups if g.support(metric) >= cfg.min_group_size]
    merged = None
    if small:
        merged = small[0]  # a single small group is judged under its own name
        for g in small[1:]:
            merged = merged + g
        if merged.support(metric) >= cfg.min_group_size:
            judged.append(merged)
    draws = {g.name: _boot_rates(g, metric, cfg.bootstrap, rng) for g in judged}
    out = []
    for g in groups:
        support = g.support(metric)
        if support == 0:
            judged_as, note = "", f"no {_DENOMINATOR[metric]}: rate undefined"
        elif support < cfg.min_group_size:
            in_merge = merged is not None and merged in judged
            judged_as = merged.name if in_merge else ""
            note = f"{support} {_DENOMINATOR[metric]}, under {cfg.min_group_size}: " + (
                f"judged as {merged.name!r}" if in_merge else "too small even merged"
            )
        else:
            judged_as, note = g.name, ""
        key = judged_as or None
        lo, hi = _interval(draws[key], cfg.confidence) if key in draws else (None, None)
        out.append(
            {
                "attribute": attribute, "metric": metric, "group": g.name,
                "example_count": g.rows, "support": support, "rate": g.rate(metric),
                "rate_low": lo if key == g.name else None,
                "rate_high": hi if key == g.name else None,
                "judged_as": judged_as, "note": note,
            }
        )
    if merged is not None and merged in judged and len(small) > 1:
        lo, hi = _interval(draws[merged.name], cfg.confidence)
        out.append(
            {
                "attribute": attribute, "metric": metric, "group": merged.name,
                "example_count": merged.rows, "support": merged.support(metric),
                "rate": merged.rate(metric), "rate_low": lo, "rate_high": hi,
                "judged_as": merged.name, "note": ", ".join(g.name for g in small),
            }
        )
    if len(judged) < 2:
        check.note = f"fewer than two groups with {cfg.min_group_size} {_DENOMINATOR[metric]}"
        return check, out
    rates = {g.name: g.rate(metric) for g in judged}
    worst = max(rates, key=rates.get)
    best = min(rates, key=rates.get)
    stacked = np.vstack([draws[g.name] for g in judged])
    boot = stacked.max(axis=0) - stacked.min(axis=0)
    check.gap = rates[worst] - rates[best]
    check.worst_group, check.worst_rate = worst, rates[worst]
    check.best_group, check.best_rate = best, rates[best]
    check.boot = boot
    check.p_exceeds = float(np.mean(boot <= cfg.max_disparity))
    check.p_within = float(np.mean(boot > cfg.max_disparity))
    return check, out


def _boot_rates(g: GroupCounts, metric: str, b: int, rng) -> np.ndarray:
    """Bootstrap replicates of a group's rate, positives and negatives resampled apart."""
    fn = rng.binomial(g.positives, g.false_negatives / g.positives, b) if g.positives else 0
    fp = rng.binomial(g.negatives, g.false_positives / g.negatives, b) if g.negatives else 0
    if metric == "fnr":
        return np.asarray(fn, dtype=float) / g.positives
    if metric == "fpr":
        return np.asarray(fp, dtype=float) / g.negatives
    return (np.asarray(fn, dtype=float) + fp) / g.rows


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    a = (1.0 - confidence) / 2
    lo, hi = np.quantile(draws, [a, 1 - a])
    return float(lo), float(hi)


def _holm(checks: list[DisparityCheck], alpha: float) -> None:
    """Holm's step-down, once for "shown above the limit" and once for "shown within it".
    Each check keeps the one-sided level it was judged at (the step where it was decided, or
    where the procedure stopped), so the interval shown and the verdict agree."""
    compared = [c for c in checks if c.boot is not None]
    m = len(compared)
    decided: dict[str, dict[int, tuple[bool, float]]] = {}
    for family in ("p_exceeds", "p_within"):
        out: dict[int, tuple[bool, float]] = {}
        stop_level = None
        for k, c in enumerate(sorted(compared, key=lambda c: getattr(c, family))):
            level = alpha / (m - k)
            if stop_level is None and getattr(c, family) <= level:
                out[id(c)] = (True, level)
            else:
                stop_level = level if stop_level is None else stop_level
                out[id(c)] = (False, stop_level)
        decided[family] = out
    for c in compared:
        above, a_low = decided["p_exceeds"][id(c)]
        within, a_high = decided["p_within"][id(c)]
        c.low = float(np.quantile(c.boot, a_low))
        c.high = float(np.quantile(c.boot, 1 - a_high))
        c.level = 1 - a_low - a_high
        c.verdict = Verdict.FAIL if above else Verdict.PASS if within else Verdict.INCONCLUSIVE


def _finish(c: DisparityCheck) -> None:
    c.boot = None
    if c.verdict is Verdict.INCONCLUSIVE and c.gap is not None:
        # Interval widths shrink as 1/sqrt(rows): how far the near side must move to clear
        # the limit gives the factor on the rows.
        if c.gap > c.allowed:
            near, room = c.gap - c.low, c.gap - c.allowed
        else:
            near, room = c.high - c.gap, c.allowed - c.gap
        if room > 1e-9 and near > 0:
            c.rows_needed = int(math.ceil(c.rows * (near / room) ** 2))


def verdict_of(tags: dict[str, str]) -> Verdict:
    """A run's or version's fairness verdict from its tags (older runs: `fairness_passed`)."""
    if tags.get("fairness_verdict"):
        return Verdict(tags["fairness_verdict"])
    return Verdict.PASS if tags.get("fairness_passed", "true") == "true" else Verdict.FAIL
