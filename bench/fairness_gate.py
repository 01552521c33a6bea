"""Error rates of the fairness gate (mlplatform.evaluation.fairness, ADR 0025), simulated at
credit's group sizes and base rates.

Run: `.venv/bin/python bench/fairness_gate.py [--sets 1000] [--json out.json] [--plot out.png]`.

Each simulated evaluation set has credit's test split per protected group (sex, age band,
education, marriage: a quarter of each group's defaulters and payers in the shipped file) and
error counts drawn from true rates: FNR 0.45 and FPR 0.15 for every group (a fair model), then
the same with the FNR of clients aged 55+ raised by a true gap of 0.05 ... 0.30. Each set is
judged twice: by the gate (intervals, Holm across all eight checks) and by the old
point-estimate gate (FAIL when an observed gap exceeds 0.10 between groups of >= 50). Goals:
a fair model FAILs <= 5% of the time (all checks together); FAIL reaches 80% by a true gap of
0.30. A report: it exits 0 whatever the numbers say.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from mlplatform.evaluation.fairness import GroupCounts, Verdict, judge
from mlplatform.evaluation.slicing import band_column
from mlplatform.spec import load_spec
from mlplatform.workspace import REPO_ROOT

FNR, FPR = 0.45, 0.15
GAPS = (0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30)
SHIFTED = ("age_band", ">=55")


def credit_groups(test_fraction: float) -> dict[str, list[tuple[str, int, int]]]:
    """(group, positives, negatives) in a test split of credit, per protected attribute."""
    spec = load_spec(REPO_ROOT / "usecases" / "credit.yaml")
    df = pd.read_csv(REPO_ROOT / spec.source.path)
    for band in spec.slices.bands:
        df[band.name] = band_column(df[band.column], band)
    out = {}
    for attr in spec.slices.protected:
        rows = []
        for value, g in df.groupby(df[attr].astype(str)):
            pos = int(round(g[spec.label].sum() * test_fraction))
            neg = int(round((len(g) - g[spec.label].sum()) * test_fraction))
            rows.append((str(value), pos, neg))
        out[attr] = rows
    return out


def simulate(groups, gap: float, rng) -> dict[str, list[GroupCounts]]:
    counts = {}
    for attr, rows in groups.items():
        gs = []
        for name, pos, neg in rows:
            fnr = FNR + gap if (attr, name) == SHIFTED else FNR
            gs.append(GroupCounts(name, pos, neg, int(rng.binomial(pos, fnr)),
                                  int(rng.binomial(neg, FPR))))
        counts[attr] = gs
    return counts


def old_gate(counts: dict[str, list[GroupCounts]], allowed: float, floor: int = 50) -> bool:
    """The point-estimate gate this replaces: True when it would FAIL the set."""
    for gs in counts.values():
        for metric in ("fpr", "fnr"):
            rates = [g.rate(metric) for g in gs if g.support(metric) >= floor]
            if len(rates) >= 2 and max(rates) - min(rates) > allowed:
                return True
    return False


def _crossing(x: list[float], y: list[float], level: float) -> float | None:
    """The x where y first reaches `level`, linearly interpolated between measured points."""
    for (x0, y0), (x1, y1) in zip(zip(x, y, strict=True), zip(x[1:], y[1:], strict=True),
                                  strict=False):
        if y0 < level <= y1:
            return x0 + (level - y0) * (x1 - x0) / (y1 - y0)
    return x[0] if y and y[0] >= level else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=1000)
    ap.add_argument("--json", default="")
    ap.add_argument("--plot", default="")
    args = ap.parse_args()
    spec = load_spec(REPO_ROOT / "usecases" / "credit.yaml")
    groups = credit_groups(spec.split.test_fraction)
    rng = np.random.default_rng(20261204)
    shifted = [g for g in groups[SHIFTED[0]] if g[0] == SHIFTED[1]][0]
    print(f"credit test split: {sum(p + n for _, p, n in groups['sex'])} rows; "
          f"{SHIFTED[0]} {SHIFTED[1]!r}: {shifted[1]} defaulters, {shifted[2]} payers")
    print(f"{'true gap':>8} {'PASS':>6} {'INCONCL':>8} {'FAIL':>6} {'old FAIL':>9} "
          f"{'check FAIL':>10}")
    rows = []
    for gap in GAPS:
        tally = {v: 0 for v in Verdict}
        old = check_fail = 0
        per_check: dict[str, dict[str, int]] = {}
        for i in range(args.sets):
            counts = simulate(groups, gap, rng)
            report = judge(counts, spec, seed=i)
            for c in report.checks:
                key = f"{c.attribute} {c.metric}"
                per_check.setdefault(key, {v.value: 0 for v in Verdict})[c.verdict.value] += 1
            tally[report.verdict] += 1
            old += old_gate(counts, spec.fairness.max_disparity)
            target = next(c for c in report.checks
                          if (c.attribute, c.metric) == (SHIFTED[0], "fnr"))
            check_fail += target.verdict is Verdict.FAIL
        share = {v.value: tally[v] / args.sets for v in Verdict}
        row = {"true_gap": gap, **share, "old_fail": old / args.sets,
               "age_fnr_check_fail": check_fail / args.sets}
        row["checks"] = {k: {v: n / args.sets for v, n in t.items()} for k, t in per_check.items()}
        rows.append(row)
        print(f"{gap:>8.2f} {share['pass']:>6.1%} {share['inconclusive']:>8.1%} "
              f"{share['fail']:>6.1%} {row['old_fail']:>9.1%} {row['age_fnr_check_fail']:>10.1%}")
    fair_fail = rows[0]["fail"]
    reach = _crossing([r["true_gap"] for r in rows], [r["fail"] for r in rows], 0.8)
    print("\nper check, fair model (true gap 0): PASS / INCONCLUSIVE / FAIL")
    for key, share in rows[0]["checks"].items():
        print(f"  {key:<16} {share['pass']:>6.1%} {share['inconclusive']:>8.1%} "
              f"{share['fail']:>6.1%}")
    print(f"\nfair model FAILed {fair_fail:.1%} of {args.sets} sets (goal <= 5%): "
          f"{'PASS' if fair_fail <= 0.05 else 'FAIL'}")
    print(f"FAIL reaches 80% at a true gap of "
          f"{f'{reach:.3f} (interpolated)' if reach is not None else '> 0.30'} "
          f"(old gate failed a fair model {rows[0]['old_fail']:.1%} of the time)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "fail_80_at_gap": reach}, fh, indent=1)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        x = [r["true_gap"] for r in rows]
        for key, style in (("pass", "-o"), ("inconclusive", "-s"), ("fail", "-^"),
                           ("old_fail", "--x")):
            ax.plot(x, [r[key] for r in rows], style, label=key.replace("_", " "))
        ax.axvline(spec.fairness.max_disparity, color="grey", lw=0.8)
        ax.set_xlabel("true FNR gap, clients aged 55+")
        ax.set_ylabel("share of evaluation sets")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
