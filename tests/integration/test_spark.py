"""Batch scoring and feature aggregates on a real Spark standalone cluster (master + 2 workers
on loopback, started by the `spark_cluster` fixture) against the local, pandas paths."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlplatform.features.definitions import table_path
from mlplatform.jobs.scoring import score_file
from mlplatform.packaging import scoring_check
from mlplatform.spark.features import aggregate_table, usable_rows
from mlplatform.spark.scoring import ERROR, score_file_spark
from mlplatform.spec import load_spec
from mlplatform.tracking import use_workspace
from mlplatform.workspace import REPO_ROOT, Workspace

from ..conftest import source_of
from .conftest import TrainedWorkspace, free_the_cores, train_workspace

pytestmark = pytest.mark.integration
# Local scoring parses each chunk through the request contract, which takes 10,000 rows at most.
LOCAL_CHUNK = 10_000


@pytest.fixture(scope="module")
def trained_credit(tmp_path_factory) -> TrainedWorkspace:
    return train_workspace("credit", tmp_path_factory.mktemp("trained-credit") / "home")


def _local_and_spark(tw: TrainedWorkspace, spark, source: Path, out: Path):
    use_workspace(tw.home, tw.spec.name)
    uri = tw.run.model_uri
    model = mlflow.pyfunc.load_model(uri)
    local = score_file(model, "m/1", source, out / "local.parquet", LOCAL_CHUNK, progress=False)
    res = score_file_spark(spark, uri, "m/1", source, out / "spark", model=model)
    return model, local, res


@pytest.mark.slow  # ~2 min with the training and the executors' first model load
@pytest.mark.parametrize("usecase", ["taxi", "credit"])
def test_spark_scoring_equals_local_row_for_row(
    usecase, request, spark, tmp_path
) -> None:
    tw = request.getfixturevalue(f"trained_{usecase}")
    # taxi's model also takes the aggregates: its Feast training set (parquet) has them all;
    # credit's raw CSV has every input. Both readers are covered.
    source = tw.training_set if usecase == "taxi" else source_of(tw.spec)
    model, local, res = _local_and_spark(tw, spark, source, tmp_path)
    assert res.rejected == 0 and res.rejected_output is None
    assert res.check_max_abs_diff is not None  # the packed check ran on the executors
    assert res.data_version == local.data_version
    want = pd.read_parquet(local.output)
    got = pd.read_parquet(res.output)  # part files in task order: the input's row order
    assert res.rows == len(got) == len(want) == local.rows
    assert list(got.columns) == list(want.columns)
    tol = scoring_check.packed(model)["tolerance"]
    np.testing.assert_allclose(got["probability"], want["probability"], rtol=0, atol=tol)
    others = [c for c in want.columns if c != "probability"]
    # Values, not pandas dtypes: pandas' extension dtypes (Int64 of a nullable label) live in
    # pandas' own Parquet metadata, which Spark does not write; timestamps are us, not ns.
    pd.testing.assert_frame_equal(got[others], want[others], check_dtype=False)


def test_bad_rows_are_reported_not_a_crashed_job(trained_taxi, spark, tmp_path) -> None:
    frame = pd.read_parquet(trained_taxi.training_set).head(300)
    numeric = next(
        f.name
        for f in scoring_check_contract(trained_taxi).fields
        if f.kind == "double" and f.name in frame
    )
    text = frame.astype(object)
    text.loc[5, numeric] = "not-a-number"
    text.loc[7, numeric] = "1e300"
    bad = tmp_path / "bad.csv"
    text.to_csv(bad, index=False)
    use_workspace(trained_taxi.home, "taxi")
    res = score_file_spark(spark, trained_taxi.run.model_uri, "m/1", bad, tmp_path / "out")
    assert (res.rows, res.rejected) == (298, 2)
    rejected = pd.read_parquet(res.rejected_output)
    reasons = rejected[ERROR].tolist()
    assert any(f"{numeric}: expected a number, got not-a-number" in r for r in reasons), reasons
    assert any(f"{numeric}: out of range" in r for r in reasons), reasons
    # The other rows are scored as local scoring scores the file without the two bad ones.
    good = tmp_path / "good.csv"
    frame.drop(index=[5, 7]).to_csv(good, index=False)
    model = mlflow.pyfunc.load_model(trained_taxi.run.model_uri)
    local = score_file(model, "m/1", good, tmp_path / "good.parquet", LOCAL_CHUNK, progress=False)
    np.testing.assert_allclose(
        pd.read_parquet(res.output)["probability"],
        pd.read_parquet(local.output)["probability"],
        rtol=0,
        atol=1e-9,
    )


def scoring_check_contract(tw: TrainedWorkspace):
    from mlplatform.packaging.contract import Contract

    use_workspace(tw.home, tw.spec.name)
    return Contract.of_model(mlflow.pyfunc.load_model(tw.run.model_uri))


def test_aggregates_on_spark_equal_the_pandas_build(trained_taxi, spark) -> None:
    spec = trained_taxi.spec
    assert spec.features.aggregates, "taxi's spec declares aggregates"
    ws = Workspace.for_usecase(trained_taxi.home, spec.name)
    rows = usable_rows(spark, spec, ws)
    for agg in spec.features.aggregates:
        want = pd.read_parquet(table_path(ws.feast / "data", f"{spec.name}_{agg.name}"))
        got = aggregate_table(rows, agg)
        # Sums in another order: means equal to the last few bits, counts and keys exactly.
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)


def test_aggregates_over_awkward_headers_equal_the_pandas_build(spark) -> None:
    """A group and means named as exports name them (a dot, a space, a $, a backquote): Spark
    would read `area.code` as a struct's field; the table is the pandas build's."""
    from mlplatform.features.tables import EVENT_TS
    from mlplatform.features.tables import aggregate_table as pandas_table
    from mlplatform.spec import Aggregate

    rng = np.random.default_rng(3)
    n = 400
    rows = pd.DataFrame({
        "area.code": rng.choice(["N 1", "S.2", "E`3"], n),
        EVENT_TS: pd.to_datetime(1_420_070_400 + rng.integers(0, 12 * 86_400, n), unit="s",
                                 utc=True),
        "fare $": rng.gamma(2.0, 6.0, n),
        "trip.miles": np.where(rng.random(n) < 0.1, np.nan, rng.gamma(1.5, 2.0, n)),
    })
    agg = Aggregate(name="area stats", group_by="area.code", window_days=3,
                    mean_of=("fare $", "trip.miles"))
    got = aggregate_table(spark.createDataFrame(rows), agg)
    pd.testing.assert_frame_equal(got, pandas_table(rows, agg), check_exact=False, rtol=1e-9)


def _taxi_in_two_batches(home: Path, tmp: Path) -> Workspace:
    """taxi's file as two accepted batches: the first 9,000 rows as shipped, then rows 6,000 to
    the end re-exported by pandas (integer columns with nulls written as "22.0"), the 3,000
    rows they share re-sent (released past the gate's overlap rule: such rows count once)."""
    from mlplatform.validation.quarantine import Gate
    from mlplatform.validation.schema import build_schema

    spec = load_spec(REPO_ROOT / "usecases" / "taxi.yaml")
    lines = source_of(spec).read_text().splitlines(keepends=True)
    first = tmp / "first.csv"
    first.write_text("".join(lines[: 1 + 9000]))
    second = tmp / "second.csv"
    pd.read_csv(source_of(spec)).iloc[6000:].to_csv(second, index=False)
    ws = Workspace.for_usecase(home, spec.name)
    gate = Gate(spec, build_schema(spec), ws)
    assert gate.process(first).accepted
    out = gate.process(second)
    if not out.accepted:
        assert gate.release(out.record.batch_id, "re-sent rows on purpose", force=True).accepted
    return ws


@pytest.mark.slow  # ~2 min: two gated batches, the pandas build, the command's own session
def test_cli_builds_the_same_offline_tables_on_the_cluster(spark_cluster, tmp_path) -> None:
    """`mlplatform features build --engine spark` writes every offline table of the pandas
    build (the rows view and both aggregates), the same files with the same rows in the same
    order and the same dtypes; the files are read in several splits each, so the derived
    trip keys (batch + place in the file) are put together across partitions."""
    from mlplatform.features.store import FeatureRepo

    free_the_cores()
    ws = _taxi_in_two_batches(tmp_path / "pandas", tmp_path)
    shutil.copytree(tmp_path / "pandas", tmp_path / "spark")
    spec = load_spec(REPO_ROOT / "usecases" / "taxi.yaml")
    built = FeatureRepo(spec, ws).build_tables()
    assert built.rows == 15_002 and len(built.batches) == 2  # the re-sent rows counted once
    env = {**os.environ,
           "PYSPARK_SUBMIT_ARGS": "--conf spark.sql.files.maxPartitionBytes=262144 pyspark-shell"}
    build = [sys.executable, "-m", "mlplatform.cli", "features", "build", "--usecase", "taxi",
             "--home", str(tmp_path / "spark"), "--engine", "spark",
             "--master", spark_cluster.master_url]
    want_dir, got_dir = ws.feast / "data", tmp_path / "spark" / "taxi" / "feast" / "data"
    got_dir.mkdir(parents=True, exist_ok=True)
    for table in want_dir.glob("*.parquet"):  # as if the pandas build had run in this home
        shutil.copy2(table, got_dir / table.name)
    # A build killed (driver and JVM) while the executors write its part files leaves every
    # table of the build before it whole; the same command run again needs no clean-up.
    _killed_once_started(build, env, lambda: any(got_dir.glob(".spark-parts-*/out")))
    for name in sorted(p.name for p in want_dir.glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(got_dir / name),
                                      pd.read_parquet(want_dir / name))
    r = subprocess.run(build, capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not list(got_dir.glob(".*"))  # no part files or partial tables of the killed run
    assert f"on Spark at {spark_cluster.master_url}" in r.stderr  # progress, step by step
    assert "materializing the online store" in r.stderr
    summary = json.loads(r.stdout[r.stdout.index("{\n"):])  # after Feast's materialize lines
    assert summary["tables"] == built.tables and summary["rows"] == built.rows
    files = sorted(p.name for p in want_dir.glob("*.parquet"))
    assert files == sorted(p.name for p in got_dir.glob("*.parquet")) and len(files) == 3
    for name in files:
        want, got = pd.read_parquet(want_dir / name), pd.read_parquet(got_dir / name)
        # Row for row, dtypes too (Int64 stays Int64); sums in another order: means equal to
        # the last few bits, keys, times and counts exactly.
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)


def _killed_once_started(cmd: list[str], env: dict, started, timeout: float = 600) -> None:
    """Run `cmd` in a session of its own and SIGKILL all of it (the CLI and its Spark driver
    JVM) as soon as `started()` holds; fails if the command ended before that."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=log,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not started() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"ended (exit {proc.returncode}) before it could be killed: "
                            f"{log.read()[-3000:].decode(errors='replace')}")
            assert started(), f"did not reach the point to kill it within {timeout:.0f}s"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_cli_feature_build_on_an_unreachable_master_says_what_to_do(tmp_path) -> None:
    """A master that does not answer fails at once (no 60 s of Spark retries), naming the URL
    and `make spark-up`; for `features build` and `score` alike."""
    from mlplatform.spark.cluster import free_port

    url = f"spark://127.0.0.1:{free_port()}"
    for args in (["features", "build"], ["score", "in.csv", str(tmp_path / "o")]):
        r = subprocess.run(
            [sys.executable, "-m", "mlplatform.cli", *args, "--home", str(tmp_path / "home"),
             "--engine", "spark", "--master", url],
            capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
        )
        assert r.returncode == 2, r.stderr
        assert f"no Spark master answers at {url}" in r.stderr, r.stderr
        assert "make spark-up" in r.stderr and "Traceback" not in r.stderr


def test_cli_spark_engine_without_master_says_what_to_do(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SPARK_MASTER"}
    r = subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", "score", "in.csv", str(tmp_path / "o"),
         "--engine", "spark"],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120,
    )
    assert r.returncode == 2
    assert "--engine spark needs --master" in r.stderr and "make spark-up" in r.stderr


def _registered_home(trained_taxi: TrainedWorkspace, tmp_path_factory, name: str):
    """A home of its own for `name` with taxi's trained model registered: (home, version)."""
    from mlplatform.registry import models as reg

    home = trained_taxi.own_home(tmp_path_factory, name)
    run = trained_taxi.run
    return home, reg.register(trained_taxi.spec, run.run_id, run.model_uri, {})


def _score_on_spark(source: Path, out: Path, home: Path, version: str, master: str) -> list:
    """The command line of `mlplatform score SOURCE OUT --engine spark` for taxi's `version`."""
    return [sys.executable, "-m", "mlplatform.cli", "score", str(source), str(out),
            "--usecase", "taxi", "--home", str(home), "--version", version,
            "--engine", "spark", "--master", master]


def _run(
    cmd: list[str], env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                          timeout=timeout)


@pytest.mark.slow
def test_cli_scores_a_registered_version_on_the_cluster(
    trained_taxi, spark_cluster, tmp_path_factory, tmp_path
) -> None:
    free_the_cores()
    home, version = _registered_home(trained_taxi, tmp_path_factory, "spark-cli")
    out = tmp_path / "scored"
    master = spark_cluster.master_url
    r = _run(_score_on_spark(trained_taxi.training_set, out, home, version, master))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "executors' scoring check" in r.stdout
    got = pd.read_parquet(out)
    assert set(got["model_version"]) == {f"taxi-classifier/{version}"}
    assert len(got) == len(pd.read_parquet(trained_taxi.training_set))
    # Refused rows are kept aside, and the scoring is reported incomplete: exit 3.
    text = pd.read_parquet(trained_taxi.training_set).head(200).astype(object)
    text.loc[3, "fare"] = "not-a-number"
    bad = tmp_path / "bad.csv"
    text.to_csv(bad, index=False)
    r = _run(_score_on_spark(bad, tmp_path / "bad-out", home, version, master))
    assert r.returncode == 3, r.stderr[-3000:]
    assert "1 row(s) refused" in r.stderr and "fare" in r.stderr and "--allow-rejected" in r.stderr
    assert len(pd.read_parquet(tmp_path / "bad-out")) == 199
    r = _run([*_score_on_spark(bad, tmp_path / "ok-out", home, version, master),
              "--allow-rejected"])
    assert r.returncode == 0 and "warning: 1 row(s) refused" in r.stderr, r.stderr[-3000:]


@pytest.mark.slow  # ~3 min: a whole scoring, a killed one and its re-run, each its own driver
def test_a_killed_spark_scoring_keeps_the_last_output_and_its_rerun_completes(
    trained_taxi, spark_cluster, tmp_path_factory, tmp_path
) -> None:
    """`score --engine spark` SIGKILLed (the CLI and its driver JVM) while the executors write:
    the output of the run before is still there and whole; the same command run again writes
    the new output whole into the same place, the killed application's cores given back."""
    free_the_cores()
    home, version = _registered_home(trained_taxi, tmp_path_factory, "spark-killed")
    small = trained_taxi.training_set
    big = tmp_path / "eight-times.parquet"
    pd.concat([pd.read_parquet(small)] * 8, ignore_index=True).to_parquet(big)
    out = tmp_path / "scored"

    def score(source: Path) -> list[str]:
        return _score_on_spark(source, out, home, version, spark_cluster.master_url)

    r = _run(score(small))
    assert r.returncode == 0, r.stderr[-3000:]
    before = pd.read_parquet(out)
    partial = out.with_name(out.name + ".partial")
    _killed_once_started(score(big), dict(os.environ), partial.exists)
    pd.testing.assert_frame_equal(pd.read_parquet(out), before)  # the last output, whole
    r = _run(score(big))
    assert r.returncode == 0, r.stderr[-3000:]
    after = pd.read_parquet(out)
    assert len(after) == 8 * len(before) and not partial.exists()
    assert set(after["data_version"]) != set(before["data_version"])  # another input's hash
    pd.testing.assert_frame_equal(after.head(len(before)).drop(columns="data_version"),
                                  before.drop(columns="data_version"))


def test_a_cluster_with_no_free_core_fails_the_command_saying_so(
    trained_taxi, spark, spark_cluster, tmp_path_factory, tmp_path
) -> None:
    """Another application (this process's session) holds both workers' cores: the command
    does not wait without end for one, it fails after MLPLATFORM_SPARK_EXECUTOR_WAIT seconds
    with exit 2, saying why and what to do, and writes nothing."""
    from mlplatform.spark.cluster import executors

    deadline = time.monotonic() + 120
    while executors(spark) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert executors(spark) == 2  # the fixture's session holds both workers' cores
    home, version = _registered_home(trained_taxi, tmp_path_factory, "spark-busy")
    out = tmp_path / "scored"
    r = _run(
        _score_on_spark(trained_taxi.training_set, out, home, version, spark_cluster.master_url),
        env={**os.environ, "MLPLATFORM_SPARK_EXECUTOR_WAIT": "10"},
        timeout=300,
    )
    assert r.returncode == 2, r.stderr[-3000:]
    assert "gave this job no executor within 10s" in r.stderr, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and not out.exists()
