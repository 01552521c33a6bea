"""What one scheduled monitoring run costs as its window grows: time and peak memory of
`judge_window` (drift, confidence, Evidently snapshot, triggers, checkpoint) on 10k, 100k and
1M logged rows, each in a fresh process on a fresh checkpoint.

The first run after `make serve` has been up for a while reads the whole request log: up to
max_files x max_file_rows = 1M rows at the default bounds (mlplatform.monitoring.requestlog).
Goal: linear time (time(1M) / time(100k) ~= 10), and peak memory that a Kubeflow task's
default-sized pod holds (a few GiB at 1M rows), not one that grows with Python dicts per row.

    .venv/bin/python bench/monitoring_window.py [--sizes 10000,100000,1000000] [--json out.json]

Set-up (~1 min, not timed): taxi through the gate, its Feast training set, a logistic
champion; the log is written by the request log's own writer from training rows scored by the
champion (sampled with replacement).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

JUDGE = """
import json, resource, sys, time
from pathlib import Path
from mlplatform.spec import load_usecase
from mlplatform.monitoring.watch import judge_window
t0 = time.perf_counter()
v = judge_window(load_usecase("taxi"), Path(sys.argv[1]), Path(sys.argv[2]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": v.rows, "judged": v.judged,
                  "notes": v.notes, "peak_mib": peak}))
"""


def champion_home(home: Path) -> tuple[Path, object]:
    """A taxi home whose champion is a freshly trained logistic; (training set, model)."""
    import mlflow

    from mlplatform.governance.stages import champion_is_reference
    from mlplatform.jobs.data import features_job
    from mlplatform.jobs.models import train_candidate
    from mlplatform.registry import models as reg
    from mlplatform.spec import load_usecase
    from mlplatform.tracking import use_workspace
    from mlplatform.validation.quarantine import Gate
    from mlplatform.validation.schema import build_schema
    from mlplatform.workspace import REPO_ROOT, Workspace

    spec = load_usecase("taxi")
    use_workspace(home, spec.name)
    gate = Gate(spec, build_schema(spec), Workspace.for_usecase(home, spec.name))
    assert gate.process(REPO_ROOT / spec.source.path).accepted
    training_set = home / "training_set.parquet"
    features_job(spec.name, home, training_set)
    run = train_candidate(spec.name, "logistic", training_set, home)
    version = reg.register(spec, run.run_id, run.model_uri, {"family": "logistic"})
    reg.client().set_registered_model_alias(
        reg.registered_model_name(spec.name), reg.CHAMPION, version
    )
    champion_is_reference(spec, home, version)
    return training_set, (spec, version, mlflow.pyfunc.load_model(run.model_uri))


def write_log(log_dir: Path, rows: int, training_set: Path, champion) -> float:
    """`rows` logged predictions, written as the model server writes them; seconds taken."""
    from mlplatform.monitoring.requestlog import RequestLog, RequestLogConfig, record_each_row
    from mlplatform.packaging.pyfunc import signature_frame
    from mlplatform.training.preprocessing import model_inputs

    spec, version, model = champion
    pool = pd.read_parquet(training_set).sample(min(rows, 20_000), replace=True, random_state=1)
    inputs = signature_frame(pool, *model_inputs(spec))
    out = model.predict(inputs)
    records = inputs.to_dict("records")
    prob, pred = list(out["probability"]), list(out["prediction"])
    t0 = time.perf_counter()
    log = RequestLog(RequestLogConfig(log_dir, flush_rows=10_000))
    done = 0
    while done < rows:
        n = min(len(records), rows - done)
        ids = [f"b-{done + i}" for i in range(n)]
        record_each_row(
            log, spec.name, f"{spec.name}-classifier/{version}", records[:n], prob[:n],
            pred[:n], ids, [1.7e9 + done + i for i in range(n)],
        )
        done += n
    log.close()
    return time.perf_counter() - t0


def judge(home: Path, log_dir: Path) -> dict:
    """One judgement in a fresh process on a fresh checkpoint; its time and peak RSS."""
    from mlplatform.workspace import Workspace

    shutil.rmtree(Workspace.locate(home, "taxi").monitoring / "evidently", ignore_errors=True)
    (Workspace.locate(home, "taxi").monitoring / "watch.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", JUDGE, str(home), str(log_dir)],
        capture_output=True, text=True, check=False,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"judge_window failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(wall_s=wall)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="window rows, ascending")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-window-") as tmp:
        home = Path(tmp) / "home"
        print("set-up: gate, training set, logistic champion ...", flush=True)
        training_set, champion = champion_home(home)
        results = []
        for rows in sizes:
            log_dir = Path(tmp) / f"log-{rows}"
            write_s = write_log(log_dir, rows, training_set, champion)
            r = judge(home, log_dir)
            assert r["rows"] == rows and r["judged"], r
            r.update(window_rows=rows, log_write_s=round(write_s, 1))
            results.append(r)
            print(f"{rows:>9,} rows: judged in {r['seconds']:6.1f} s "
                  f"({rows / r['seconds'] * 60:,.0f} rows/min), process {r['wall_s']:6.1f} s, "
                  f"peak {r['peak_mib']:,.0f} MiB", flush=True)
            shutil.rmtree(log_dir)
        base = results[0]
        for r in results[1:]:
            print(f"{r['window_rows']:,} vs {base['window_rows']:,}: rows x"
                  f"{r['window_rows'] / base['window_rows']:.0f}, time x"
                  f"{r['seconds'] / base['seconds']:.1f}, memory x"
                  f"{r['peak_mib'] / base['peak_mib']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
