"""Error rates of the validation gate, simulated on the shipped data (ADR 0023).

Run: `.venv/bin/python bench/gate_accuracy.py [--usecases taxi,credit] [--clean 200]
[--corrupt 50] [--json out.json]`.

False alarms: clean random samples at 100, 1,000, 3,000 and 15,000 rows, judged by the whole
gate (TFDV schema checks, batch checks, drift of every judged column, overlap), in two regimes:
- `new`:     the reference is a random half of the file (accepted); samples come from the other
             half, as a new batch from the same source would (with replacement above its size);
- `resample`: the reference is the whole file and samples are drawn from it (the issue's
             story). These rows are in the catalogue already, so overlap is set to `accept` for
             this regime (the rows are reported, not counted as a quarantine); draws with
             replacement repeat rows, so the duplicate limit is lifted where they are used.
Detection: every corruption class of the corpus (mlplatform.data.corpus) applied to fresh
`new` samples at 1,000 and 3,000 rows; detected = the expected anomaly on the expected feature.
Goals: <= 1% of clean samples quarantined per size; >= 95% detection per class. A report: it
exits 0 whatever the numbers say.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.data.content import row_hashes
from mlplatform.data.corpus import corruptions, read_clean
from mlplatform.data.drift import ReferenceProfile
from mlplatform.data.reading import read_batch
from mlplatform.spec import UseCase, load_spec
from mlplatform.validation.gate import judge_table
from mlplatform.validation.schema import build_schema
from mlplatform.workspace import REPO_ROOT

SEED = 20261204
CLEAN_SIZES = (100, 1_000, 3_000, 15_000)
CORRUPT_SIZES = (1_000, 3_000)
MAX_FALSE, MIN_DETECT = 0.01, 0.95


class Judge:
    """The gate's decision on in-memory frames, read back through the gate's CSV reader."""

    def __init__(self, spec: UseCase, reference: pd.DataFrame, tmp: Path) -> None:
        self.spec, self.tmp = spec, tmp
        self.schema = build_schema(spec)
        table = self._table(reference)
        self.profile = ReferenceProfile.fit(table, spec, origin="bench reference")
        self.seen = np.unique(row_hashes(table, spec))

    def _table(self, frame: pd.DataFrame):
        path = self.tmp / "batch.csv"
        frame.to_csv(path, index=False)
        return read_batch(path, self.spec, "csv").table

    def __call__(self, frame: pd.DataFrame, spec: UseCase | None = None):
        spec = spec or self.spec
        table = self._table(frame)
        return judge_table(table, spec, self.schema, self.profile, self.seen)[0]


def _draw(pool: pd.DataFrame, n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, bool]:
    replace = n > len(pool) // 2  # without replacement a draw near the pool's size is the pool
    idx = rng.choice(len(pool), size=n, replace=replace)
    return pool.iloc[np.sort(idx)].reset_index(drop=True), replace


def _lifted(spec: UseCase, overlap: bool, duplicates: bool) -> UseCase:
    update = {}
    if overlap:
        update["overlap"] = "accept"
    if duplicates:
        update["max_duplicate_fraction"] = 1.0
    return spec.model_copy(update={"validation": spec.validation.model_copy(update=update)})


def run_usecase(name: str, n_clean: int, n_corrupt: int, tmp: Path) -> dict:
    spec = load_spec(REPO_ROOT / "usecases" / f"{name}.yaml")
    df = read_clean((REPO_ROOT / spec.source.path).resolve(), spec)
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(df))
    half = len(df) // 2
    accepted = df.iloc[np.sort(order[:half])].reset_index(drop=True)
    fresh = df.iloc[np.sort(order[half:])].reset_index(drop=True)
    regimes = {"new": (Judge(spec, accepted, tmp), fresh), "resample": (Judge(spec, df, tmp), df)}
    clean: dict = {}
    for regime, (judge, pool) in regimes.items():
        for n in CLEAN_SIZES:
            t0, flagged, causes = time.perf_counter(), 0, Counter()
            for _ in range(n_clean):
                sample, replaced = _draw(pool, n, rng)
                found = judge(sample, _lifted(spec, regime == "resample", replaced))
                if found:
                    flagged += 1
                    causes.update(f"{a.kind}:{a.feature}" for a in found)
            clean[f"{regime}/{n}"] = dict(
                regime=regime, rows=n, samples=n_clean, quarantined=flagged / n_clean,
                causes=dict(causes.most_common(5)), seconds=round(time.perf_counter() - t0, 1),
            )  # fmt: skip
            print(f"  {name} clean {regime:8} n={n:>6,}: {flagged}/{n_clean} quarantined "
                  f"{dict(causes.most_common(3))}", flush=True)  # fmt: skip
    judge = regimes["new"][0]
    detect: dict = {}
    for n in CORRUPT_SIZES:
        for _ in range(n_corrupt):
            sample, replaced = _draw(fresh, n, rng)
            base = _lifted(spec, False, False)
            for c in corruptions(sample, spec, rng, accepted):
                found = judge(c.frame, base)
                hit = (c.expected_kind, c.expected_feature) in {(a.kind, a.feature) for a in found}
                extra = {a.kind for a in found} - c.allowed_kinds
                r = detect.setdefault(f"{c.name}/{n}", dict(
                    case=c.name, rows=n, expected=f"{c.expected_kind} on "
                    f"{c.expected_feature or 'batch'}", runs=0, detected=0, exact=0))  # fmt: skip
                r["runs"] += 1
                r["detected"] += hit
                r["exact"] += hit and not extra
    for r in detect.values():
        r["rate"] = r["detected"] / r["runs"]
        r["exact_rate"] = r["exact"] / r["runs"]
    return dict(usecase=name, clean=clean, detection=detect)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--usecases", default="taxi,credit")
    ap.add_argument("--clean", type=int, default=200, help="clean samples per size and regime")
    ap.add_argument("--corrupt", type=int, default=50, help="samples per class and size")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
        for name in args.usecases.split(","):
            print(f"{name}: judging samples ...", flush=True)
            results.append(run_usecase(name, args.clean, args.corrupt, Path(tmp)))
    report(results)
    if args.json:
        args.json.write_text(json.dumps(dict(seed=SEED, results=results), indent=2) + "\n")


def report(results: list[dict]) -> None:
    print(f"\nvalidation gate error rates (seed {SEED}, {len(os.sched_getaffinity(0))} CPUs)")
    for res in results:
        print(f"\n{res['usecase']}: clean samples quarantined (goal <= {MAX_FALSE:.0%} per size)")
        for r in res["clean"].values():
            verdict = "PASS" if r["quarantined"] <= MAX_FALSE else "FAIL"
            causes = ", ".join(f"{k} x{v}" for k, v in r["causes"].items()) or "-"
            print(f"  {verdict}  {r['regime']:8} {r['rows']:>7,} rows  {r['quarantined']:6.1%} "
                  f"of {r['samples']}  ({causes})")  # fmt: skip
        print(f"{res['usecase']}: corruptions detected (goal >= {MIN_DETECT:.0%} per class)")
        for r in res["detection"].values():
            verdict = "PASS" if r["rate"] >= MIN_DETECT else "FAIL"
            print(f"  {verdict}  {r['case']:22} {r['rows']:>6,} rows  {r['rate']:6.1%} "
                  f"({r['exact_rate']:.0%} with nothing unrelated)  expected {r['expected']}")


if __name__ == "__main__":
    main()
