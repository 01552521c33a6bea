"""Cost of monitoring served traffic, measured side by side in one run.

- drift per 10k logged requests (interleaved rounds, best of 5): the platform's score
  (mlplatform.monitoring.drift), TFDV statistics + skew/drift comparators, and (once) an
  Evidently report;
- growth with the number of features (14 taxi features, then copies: 28, 56), goal linear:
  time(2k features) / time(k features) ~= 2;
- growth with rows (10k, 20k, 40k), goal linear;
- the request log's cost per single-row request (the model server's added work).

    .venv/bin/python bench/monitoring.py [--json out.json] [--evidently]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mlplatform.monitoring.drift import (
    ReferenceProfile,
    drift_scores,
    monitored_columns,
    tfdv_comparison,
    typed_table,
)
from mlplatform.monitoring.requestlog import RequestLog, RequestLogConfig
from mlplatform.spec import UseCase, load_spec
from mlplatform.workspace import REPO_ROOT


def widened(spec: UseCase, df: pd.DataFrame, copies: int) -> tuple[UseCase, pd.DataFrame]:
    """The spec and data with every feature column repeated `copies` times (new names)."""
    if copies == 1:
        return spec, df
    data = spec.model_dump(mode="json")
    feats = [c for c in data["columns"] if c.get("role", "feature") == "feature"]
    extra_cols, extra = [], {}
    for k in range(1, copies):
        for c in feats:
            extra_cols.append({**c, "name": f"{c['name']}_copy{k}"})
            extra[f"{c['name']}_copy{k}"] = df[c["name"]]
    data["columns"] = data["columns"] + extra_cols
    return UseCase.model_validate(data), pd.concat([df, pd.DataFrame(extra)], axis=1)


def resample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return df.sample(n, replace=True, random_state=seed).reset_index(drop=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--evidently", action="store_true", help="also time one Evidently report")
    args = ap.parse_args(argv)
    from mlplatform.validation.statistics import compute_statistics

    spec = load_spec(REPO_ROOT / "usecases" / "taxi.yaml")
    raw = pd.read_csv(REPO_ROOT / spec.source.path)
    results: dict = {"features": {}, "rows": {}}
    print("drift cost per window (interleaved rounds, best of 5), taxi rows resampled")
    head = ("features", "rows", "score ms", "tfdv ms", "score/base", "tfdv/base")
    print(" ".join(f"{h:>10}" for h in head))
    setups = {}
    for copies in (1, 2, 4):
        wspec, wide = widened(spec, raw, copies)
        cols = monitored_columns(wspec, list(wide.columns))
        setups[len(cols)] = (
            wspec,
            cols,
            ReferenceProfile.fit(wide, wspec, cols),
            compute_statistics(typed_table(wide, wspec, cols)),
            resample(wide, 10_000, seed=copies),
        )

    def tfdv_path(wspec, cols, train_stats, window) -> None:
        stats = compute_statistics(typed_table(window, wspec, cols))
        tfdv_comparison(wspec, cols, train_stats, stats, train_stats)

    # Interleaved rounds, best of each: the machine is shared, and a load spike must hit every
    # configuration alike rather than the one that happened to run during it.
    times = {k: {"score_s": [], "tfdv_s": []} for k in setups}
    for _ in range(5):
        for k, (wspec, cols, profile, train_stats, window) in setups.items():
            t0 = time.perf_counter()
            drift_scores(profile, window)
            times[k]["score_s"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tfdv_path(wspec, cols, train_stats, window)
            times[k]["tfdv_s"].append(time.perf_counter() - t0)
    first = min(setups)
    for k in setups:
        results["features"][k] = {m: min(v) for m, v in times[k].items()}
    for k, r in results["features"].items():
        b = results["features"][first]
        print(
            f"{k:>10} {10_000:>10} {r['score_s'] * 1000:>10.1f} {r['tfdv_s'] * 1000:>10.1f} "
            f"{r['score_s'] / b['score_s']:>9.2f}x {r['tfdv_s'] / b['tfdv_s']:>9.2f}x"
        )
    cols = monitored_columns(spec, list(raw.columns))
    profile = ReferenceProfile.fit(raw, spec, cols)
    windows = {n: resample(raw, n, seed=n) for n in (10_000, 20_000, 40_000)}
    row_times: dict[int, list[float]] = {n: [] for n in windows}
    for _ in range(5):
        for n, window in windows.items():
            t0 = time.perf_counter()
            drift_scores(profile, window)
            row_times[n].append(time.perf_counter() - t0)
    for n, ts in row_times.items():
        t = min(ts)
        results["rows"][n] = {"score_s": t}
        base_t = min(row_times[10_000])
        print(f"{len(cols):>10} {n:>10} {t * 1000:>10.1f} {'':>10} {t / base_t:>9.2f}x")
    if args.evidently:
        from mlplatform.monitoring.reports import evidently_report

        window = resample(raw, 10_000, seed=7)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            evidently_report(raw, window, cols, Path(tmp) / "r.html")
            results["evidently_s"] = time.perf_counter() - t0
        print(f"evidently report, 10k rows x {len(cols)} features: {results['evidently_s']:.2f} s")
    # The request log as the model server uses it: one record() per single-row request.
    rows = raw[cols].head(2000).to_dict("records")
    with tempfile.TemporaryDirectory() as tmp:
        rlog = RequestLog(RequestLogConfig(Path(tmp)))
        t0 = time.perf_counter()
        for i, r in enumerate(rows):
            rlog.record(str(i), "taxi", "v1", [r], [0.4], [0], sampled=True)
        rlog.close()
        per_req = (time.perf_counter() - t0) / len(rows)
    results["request_log_us_per_request"] = per_req * 1e6
    print(f"request log: {per_req * 1e6:.1f} us per single-row request (buffered, flushed)")
    f = results["features"]
    k = sorted(f)
    ratio_score = f[k[-1]]["score_s"] / f[k[0]]["score_s"] / (k[-1] / k[0])
    ratio_tfdv = f[k[-1]]["tfdv_s"] / f[k[0]]["tfdv_s"] / (k[-1] / k[0])
    r = results["rows"]
    ratio_rows = r[40_000]["score_s"] / r[10_000]["score_s"] / 4
    for name, ratio in (
        ("score vs features", ratio_score),
        ("tfdv vs features", ratio_tfdv),
        ("score vs rows", ratio_rows),
    ):
        verdict = "PASS" if ratio <= 1.3 else "FAIL"
        print(f"{verdict} {name}: growth / linear = {ratio:.2f} (goal <= 1.3)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
