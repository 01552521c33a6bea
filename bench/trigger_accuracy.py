"""Error rates of the drift trigger of scheduled monitoring, simulated on the shipped data.

Run: `.venv/bin/python bench/trigger_accuracy.py [--usecases taxi,credit] [--windows 200]
[--json out.json] [--every-feature]`. A use case of your own (`MLPLATFORM_PROJECT`) works the
same way; with `--every-feature` every numeric feature is measured at the threshold monitoring
shows it against, which is how to choose the `retrain_drift` values its drafted spec lacks.

The trigger (mlplatform.monitoring.triggers, drift_windows=1) fires when a feature with a
`retrain_drift` in the spec scores above its threshold in one window (mlplatform.monitoring.
drift.served_drift: the gate's measure, judged at the window's size). The reference is a random
half of the file, as the champion's training data; windows are drawn from the other half:
- false triggers: clean windows of 100 to 10,000 rows (with replacement above half the pool);
- natural drift (use cases with an event time): the first year as the reference and each later
  calendar month as a window, the replay's setting: the file's own drift, not a fault;
- detection: the same windows with one retrain feature scaled by 1.1 to 10 (a unit change, an
  upstream fault), per window size; detected = that feature drifted.
Goal: <= 1% false triggers at every size (a scheduled run judges a window every hour: 1% is
one false retraining request in four days). A report: it exits 0 whatever the numbers say.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.data.corpus import read_clean
from mlplatform.data.drift import ReferenceProfile
from mlplatform.jobs.data import source_path
from mlplatform.monitoring.drift import served_drift
from mlplatform.spec import UseCase, load_usecase

SEED = 20261206
CLEAN_SIZES = (100, 300, 1_000, 3_000, 10_000)
SHIFT_SIZES = (100, 300, 1_000, 3_000)
FACTORS = (1.1, 1.25, 1.5, 2.0, 10.0)
MAX_FALSE = 0.01


def _draw(pool: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    idx = rng.choice(len(pool), size=n, replace=n > len(pool) // 2)
    return pool.iloc[np.sort(idx)].reset_index(drop=True)


def _fired(
    spec: UseCase, profile: ReferenceProfile, window: pd.DataFrame, every: bool = False
) -> set[str]:
    """The features that would trigger: those with a `retrain_drift`, or with `every` each
    feature at the threshold monitoring shows it against (what setting one would do)."""
    scores = served_drift(profile, window, spec)
    return {d.feature for d in scores if d.drifted and (d.triggers or every)}


def run_usecase(name: str, n_windows: int, every: bool = False) -> dict:
    spec = load_usecase(name)
    df = read_clean(source_path(spec, None), spec)
    if every:
        features = [c.name for c in spec.feature_columns if c.is_numeric]
    else:
        features = [f for f in spec.retrain_features() if spec.column(f).is_numeric]
    if not features:
        raise SystemExit(
            f"{spec.name}: no feature has a retrain_drift; pass --every-feature to measure what "
            "setting one at the threshold monitoring shows would do"
        )
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(df))
    half = len(df) // 2
    reference = df.iloc[np.sort(order[:half])].reset_index(drop=True)
    pool = df.iloc[np.sort(order[half:])].reset_index(drop=True)
    profile = ReferenceProfile.fit(reference, spec, origin="bench reference")
    clean = {}
    months = _natural_months(spec, df) if spec.event_time and spec.event_time.column else {}
    for n in CLEAN_SIZES:
        t0, fired, causes = time.perf_counter(), 0, {}
        for _ in range(n_windows):
            found = _fired(spec, profile, _draw(pool, n, rng), every)
            fired += bool(found)
            for f in found:
                causes[f] = causes.get(f, 0) + 1
        clean[n] = dict(rows=n, windows=n_windows, false_trigger_rate=fired / n_windows,
                        causes=causes, seconds=round(time.perf_counter() - t0, 1))  # fmt: skip
        print(f"  {name} clean n={n:>6,}: {fired}/{n_windows} triggered {causes}", flush=True)
    detection = {}
    for feature in features:
        for factor in FACTORS:
            for n in SHIFT_SIZES:
                hits = 0
                for _ in range(n_windows):
                    w = _draw(pool, n, rng)
                    w[feature] = w[feature] * factor
                    hits += feature in _fired(spec, profile, w, every)
                key = f"{feature} x{factor:g} n={n}"
                detection[key] = dict(feature=feature, factor=factor, rows=n,
                                      rate=hits / n_windows)  # fmt: skip
                print(f"  {name} {key:28}: detected {hits}/{n_windows}", flush=True)
    return dict(usecase=name, features=features, clean=clean, months=months, detection=detection)


def _natural_months(spec: UseCase, df: pd.DataFrame) -> dict:
    """The file's own drift: the first year as the reference, each later calendar month as a
    window (the replay's setting; the taxi fares and the card share move over 2013-2016)."""
    when = pd.to_datetime(df[spec.event_time.column], unit="s", utc=True)
    month = when.dt.strftime("%Y-%m")
    first = sorted(month.unique())[:12]
    profile = ReferenceProfile.fit(df[month.isin(first)], spec, origin="first year")
    later = [(m, w) for m, w in df[~month.isin(first)].groupby(month[~month.isin(first)])]
    fired, worst = [], {}
    for m, w in later:
        scores = [d for d in served_drift(profile, w, spec) if d.triggers]
        fired += [m] if any(d.drifted for d in scores) else []
        for d in scores:
            if d.score / d.threshold > worst.get(d.feature, (0, 0, ""))[0]:
                worst[d.feature] = (d.score / d.threshold, round(d.score, 3), m)
    print(f"  {spec.name} later months vs the first year: {len(fired)}/{len(later)} triggered "
          f"{fired}; highest score/threshold {worst}", flush=True)
    return dict(windows=len(later), triggered=fired, false_trigger_rate=len(fired) / len(later),
                worst={f: dict(score=v[1], month=v[2]) for f, v in worst.items()})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--usecases", default="taxi,credit")
    ap.add_argument("--windows", type=int, default=200, help="windows per size (and shift)")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--every-feature", action="store_true",
        help="treat every numeric feature as a retrain feature at the threshold monitoring shows "
        "it against (a drafted spec of your own dataset sets no retrain_drift yet)",
    )
    args = ap.parse_args()
    results = [
        run_usecase(name, args.windows, args.every_feature) for name in args.usecases.split(",")
    ]
    print("\nfalse triggers per clean window (goal <= 1%):")
    for r in results:
        rates = ", ".join(f"{n:,}: {c['false_trigger_rate']:.1%}" for n, c in r["clean"].items())
        print(f"  {r['usecase']:6} {rates}")
    for r in results:
        if r["months"]:
            m = r["months"]
            print(f"  {r['usecase']:6} later calendar months vs the first year: "
                  f"{len(m['triggered'])}/{m['windows']}, highest {m['worst']}")
    print("detection (share of shifted windows that trigger on the shifted feature):")
    for r in results:
        for feature in r["features"]:
            for factor in FACTORS:
                rates = ", ".join(
                    f"{d['rows']:,}: {d['rate']:.0%}" for d in r["detection"].values()
                    if d["feature"] == feature and d["factor"] == factor
                )
                print(f"  {r['usecase']:6} {feature:14} x{factor:<5g} {rates}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
