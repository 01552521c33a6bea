"""Error rates of the ranges `mlplatform init` writes (mlplatform.spec_draft.numeric_bounds).

Run: `.venv/bin/python bench/init_ranges.py [--reps 300] [--json out.json]`.

For each distribution a draft is inferred from one sample (100 or 1,000 rows, as a first CSV
is), then fresh batches from the same distribution (100, 1,000, 10,000 rows) are checked
against the written bounds. False alarm = an ordinary batch with a value outside them: the
gate would quarantine it as RANGE. Caught = a x100 unit change (dollars to cents) of such a
batch lands outside them; what the range misses the drift gate judges (bench/gate_accuracy.py).
Goal: <= 1% false alarms for every distribution, draft size and batch size. A report: it
exits 0 whatever the numbers say.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from mlplatform.spec_draft import numeric_bounds

DISTRIBUTIONS = {
    "normal": lambda r, n: r.normal(50, 10, n),
    "uniform": lambda r, n: r.uniform(0, 1, n),
    "uniform_int_18_90": lambda r, n: r.integers(18, 91, n).astype(float),
    "beta_2_5": lambda r, n: r.beta(2, 5, n),
    "exponential": lambda r, n: r.exponential(100, n),
    "gamma_2": lambda r, n: r.gamma(2, 500, n),
    "lognormal_1": lambda r, n: r.lognormal(3, 1, n),
    "pareto_2": lambda r, n: (r.pareto(2, n) + 1) * 10,
    "poisson_3": lambda r, n: r.poisson(3, n).astype(float),
    "latitude": lambda r, n: r.normal(41.88, 0.05, n),
    "signed_normal": lambda r, n: r.normal(0, 1, n),
}
DRAFT_SIZES = (100, 1000)
BATCH_SIZES = (100, 1000, 10_000)
GOAL = 0.01


def outside(x: np.ndarray, lo, hi) -> bool:
    return bool((lo is not None and x.min() < lo) or (hi is not None and x.max() > hi))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    rng = np.random.default_rng(20261204)
    rows, worst = [], 0.0
    print(f"{'distribution':<18} {'draft':>5} {'batch':>6} {'false':>7} {'x100 caught':>11}")
    for name, draw in DISTRIBUTIONS.items():
        for m in DRAFT_SIZES:
            for n in BATCH_SIZES:
                false = caught = 0
                for _ in range(args.reps):
                    sample = draw(rng, m)
                    integral = bool(np.all(np.floor(sample) == sample))
                    lo, hi, _ = numeric_bounds(sample, integral)
                    batch = draw(rng, n)
                    false += outside(batch, lo, hi)
                    caught += outside(batch * 100, lo, hi)
                fr, cr = false / args.reps, caught / args.reps
                worst = max(worst, fr)
                rows.append({"distribution": name, "draft_rows": m, "batch_rows": n,
                             "false_alarm": fr, "unit_change_caught": cr})
                print(f"{name:<18} {m:>5} {n:>6} {fr:>7.1%} {cr:>11.1%}")
    verdict = "PASS" if worst <= GOAL else "FAIL"
    print(f"\nworst false-alarm rate {worst:.1%} (goal <= {GOAL:.0%}): {verdict}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "worst_false_alarm": worst, "verdict": verdict}, fh,
                      indent=1)


if __name__ == "__main__":
    main()
