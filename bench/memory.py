"""Peak memory and seconds of the feature build's steps, the training set the old and new way.

Run: `.venv/bin/python bench/memory.py [--usecase taxi] [--home DIR] [--chunk-rows 4000]
[--repeat 1] [--json out.json]`.

One child process prepares a workspace the way `features_job` does (ingest + validate the
use case's shipped file, `build_tables`, `apply`, `materialize`) and reports its peak RSS
after each step. Then, in a fresh child process per measurement (so each peak RSS belongs to
one way alone), `FeatureRepo.training_set` runs side by side:
- `old`: one Feast `get_historical_features` call over every entity row (`chunk_rows=None`),
  the way before ADR 0028;
- `new`: runs of `--chunk-rows` entity rows, each on feature tables cut to that run's
  windows (the default since ADR 0028).
The two outputs are compared (same rows, columns, values and dtypes). Goals: the new way's
peak RSS <= 3 GB and no slower than the old way. A report: it exits 0 whatever the numbers.
`--home` reuses (or keeps) a prepared workspace; by default a temporary one is used.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_GB = 3.0


def _peak_gb() -> float:
    # ru_maxrss is in KiB on Linux: this process's high-water mark since it started.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _prepare(usecase: str, home: Path) -> None:
    """Child: gate the shipped file and build, apply and materialize the features."""
    from mlplatform.features.store import FeatureRepo
    from mlplatform.jobs.data import ingest_job, validate_job
    from mlplatform.spec import load_usecase
    from mlplatform.workspace import Workspace

    steps = []
    t = time.perf_counter()
    batch = ingest_job(usecase, None, home)
    validate_job(usecase, batch, home)
    steps.append(("ingest + validate", time.perf_counter() - t, _peak_gb()))
    repo = FeatureRepo(load_usecase(usecase), Workspace.for_usecase(home, usecase))
    for name, step in (("build_tables", repo.build_tables), ("apply", repo.apply),
                       ("materialize", repo.materialize)):
        t = time.perf_counter()
        step()
        steps.append((name, time.perf_counter() - t, _peak_gb()))
    print(json.dumps([{"step": s, "seconds": sec, "peak_gb": gb} for s, sec, gb in steps]))


def _measure(usecase: str, home: Path, chunk_rows: int | None, out: Path) -> None:
    """Child: one training set, timed; the batches are read before the clock starts."""
    from mlplatform.features.store import FeatureRepo
    from mlplatform.spec import load_usecase
    from mlplatform.workspace import Workspace

    repo = FeatureRepo(load_usecase(usecase), Workspace.for_usecase(home, usecase))
    repo.entity_frame()  # cached on the repo: both ways start from the same warm state
    before = _peak_gb()
    t = time.perf_counter()
    ts = repo.training_set(chunk_rows=chunk_rows)
    seconds = time.perf_counter() - t
    peak = _peak_gb()
    ts.to_parquet(out, index=False)
    print(json.dumps({"seconds": seconds, "peak_gb": peak, "before_gb": before,
                      "rows": len(ts), "columns": ts.shape[1]}))


def _child(*args: str) -> dict | list:
    """Run this script as a child process; its last stdout line is its JSON result."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {args[0]} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _same_content(old: Path, new: Path) -> str:
    import pandas as pd

    try:
        pd.testing.assert_frame_equal(pd.read_parquet(new), pd.read_parquet(old))
    except AssertionError as err:
        return f"FAIL ({str(err).splitlines()[0]})"
    return "PASS"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--usecase", default="taxi")
    ap.add_argument("--home", type=Path, help="a prepared home to reuse, or where to prepare")
    ap.add_argument("--chunk-rows", type=int, default=None,
                    help="entity rows per Feast call, new way (default: the library's)")
    ap.add_argument("--repeat", type=int, default=1, help="old/new pairs; the median counts")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._child:  # inside a child process
        kind, home, *rest = args._child
        if kind == "prepare":
            _prepare(args.usecase, Path(home))
        else:
            chunk = None if rest[0] == "none" else int(rest[0])
            _measure(args.usecase, Path(home), chunk, Path(rest[1]))
        return

    from mlplatform.features.store import TRAINING_CHUNK_ROWS

    chunk = args.chunk_rows or TRAINING_CHUNK_ROWS
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        home = args.home or Path(tmp) / "home"
        registry = home / args.usecase / "feast" / "registry.db"
        prepared: list = []
        if not registry.exists():
            print(f"preparing {args.usecase} in {home} (ingest, validate, build, apply, "
                  f"materialize) ...", flush=True)
            prepared = _child("--usecase", args.usecase, "--_child", "prepare", str(home))
        runs: dict[str, list[dict]] = {"old": [], "new": []}
        for r in range(args.repeat):
            for way, rows in (("old", "none"), ("new", str(chunk))):
                out = Path(tmp) / f"{way}-{r}.parquet"
                print(f"training set, {way} way (run {r + 1}/{args.repeat}) ...", flush=True)
                runs[way].append(_child("--usecase", args.usecase, "--_child", "measure",
                                        str(home), rows, str(out)))
        same = _same_content(Path(tmp) / "old-0.parquet", Path(tmp) / "new-0.parquet")

    def median(way: str, key: str) -> float:
        vals = sorted(m[key] for m in runs[way])
        return vals[len(vals) // 2]

    old_s, new_s = median("old", "seconds"), median("new", "seconds")
    old_gb, new_gb = median("old", "peak_gb"), median("new", "peak_gb")
    shape = f"{runs['new'][0]['rows']:,} rows x {runs['new'][0]['columns']} columns"
    print(f"\n{args.usecase}: peak RSS of one process and seconds per step ({shape})")
    print(f"{'step':<36} {'peak RSS GB':>11} {'seconds':>8}")
    for p in prepared:
        print(f"{p['step']:<36} {p['peak_gb']:>11.2f} {p['seconds']:>8.1f}")
    print(f"{'training_set old: 1 Feast call':<36} {old_gb:>11.2f} {old_s:>8.1f}")
    print(f"{f'training_set new: runs of {chunk:,} rows':<36} {new_gb:>11.2f} {new_s:>8.1f}")
    print(f"{'new / old':<36} {new_gb / old_gb:>10.2f}x {new_s / old_s:>7.2f}x")
    print(f"(RSS before the step: {median('new', 'before_gb'):.2f} GB)")
    verdicts = {
        f"new peak RSS <= {GOAL_GB:g} GB": "PASS" if new_gb <= GOAL_GB else "FAIL",
        "new no slower than old": "PASS" if new_s <= old_s else "FAIL",
        "same training set (rows, columns, values, dtypes)": same,
    }
    for goal, verdict in verdicts.items():
        print(f"{verdict:<5} {goal}")
    if args.json:
        args.json.write_text(json.dumps({"usecase": args.usecase, "chunk_rows": chunk,
                                         "prepare": prepared, "runs": runs,
                                         "verdicts": verdicts}, indent=2))


if __name__ == "__main__":
    main()
