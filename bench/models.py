"""The three candidate families side by side, per use case, in one run.

Quality (AUC overall and on the recent slice) next to serving cost measured through each
packaged pyfunc (single-row p50/p99, batch rows/s, artifact size), with ratios to the
fastest candidate. Usage: `.venv/bin/python bench/models.py [--usecases taxi,credit]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mlplatform.jobs.data import features_job, gate_for, source_path
from mlplatform.jobs.models import train_candidate

FAMILIES = ("logistic", "xgboost", "keras")


def bench_usecase(usecase: str, home: Path) -> list[dict]:
    gate = gate_for(usecase, home)
    out = gate.process(source_path(gate.spec, None))
    if not out.accepted:
        raise SystemExit(f"{usecase}: the shipped data was quarantined: {out.report.summary()}")
    ts = home / f"{usecase}_training_set.parquet"
    features_job(usecase, home, ts)
    return [{"family": f, **train_candidate(usecase, f, ts, home).to_dict()} for f in FAMILIES]


def table(usecase: str, rows: list[dict]) -> str:
    fastest = min(r["serving_single_p99_ms"] for r in rows)
    best_tp = max(r["serving_batch_rows_per_s"] for r in rows)
    head = (
        f"\n{usecase}\n{'family':<9} {'AUC all':>8} {'AUC rec':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'p99/fast':>8} {'rows/s':>10} {'rows/s/best':>11} {'MB':>6}"
    )
    lines = [head]
    for r in rows:
        rec = r.get("auc_recent")
        lines.append(
            f"{r['family']:<9} {r['auc_overall']:>8.4f} "
            f"{(f'{rec:.4f}' if rec is not None else 'n/a'):>8} "
            f"{r['serving_single_p50_ms']:>7.2f} {r['serving_single_p99_ms']:>7.2f} "
            f"{r['serving_single_p99_ms'] / fastest:>7.1f}x "
            f"{r['serving_batch_rows_per_s']:>10,.0f} "
            f"{r['serving_batch_rows_per_s'] / best_tp:>10.2f}x "
            f"{r['serving_artifact_mb']:>6.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--usecases", default="taxi,credit")
    ap.add_argument("--json", type=Path, help="Also write the raw results here.")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for uc in args.usecases.split(","):
            results[uc] = bench_usecase(uc, Path(tmp) / "home")
    for uc, rows in results.items():
        print(table(uc, rows))
    print(
        "\nrecent = the held-out most recent period (taxi); credit has no event time, so its "
        "held-out set is a stratified random 25% and only AUC overall applies."
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
