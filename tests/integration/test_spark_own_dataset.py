"""Spark on a dataset the tests did not ship: scikit-learn's wine table exported with awkward
headers ("1st.proline", "od280/od315 of diluted wines", "Alcohol %"), taken through `init` and
`run` as a user would, then its feature build and its scoring run on the standalone cluster
(started by the `spark_cluster` fixture) and compared with the local engine's."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import free_the_cores
from .exports import project_cli, wine_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass(frozen=True)
class WineProject:
    project: Path
    home: Path
    csv: Path
    df: pd.DataFrame


@pytest.fixture(scope="module")
def wine(tmp_path_factory, repo_root, spark_cluster) -> WineProject:
    """wine through `init` and `run` (its challenger registered), with no Spark session of
    this process holding the cluster's cores: each command below starts its own driver."""
    free_the_cores()
    tmp = tmp_path_factory.mktemp("spark-wine")
    project, home, csv = tmp / "project", tmp / "home", tmp / "export" / "wine.csv"
    csv.parent.mkdir()
    df = wine_csv(csv, "words")
    init = project_cli(repo_root, project, "init", "wine", "--from", str(csv),
                       "--label", "cultivar", "--positive", "barolo")
    assert init.returncode == 0, init.stderr[-2000:]
    run = project_cli(repo_root, project, "run", "-u", "wine", "--home", str(home))
    assert run.returncode == 0, run.stderr[-3000:]
    return WineProject(project, home, csv, df)


def test_feature_build_of_an_unshipped_dataset_on_spark_equals_the_pandas_build(
    wine, spark_cluster, repo_root, tmp_path
) -> None:
    """`run` built the offline tables with pandas; the same home copied and built again on the
    cluster gives the same files, row for row, with the headers as the export spelled them."""
    spark_home = tmp_path / "home"
    shutil.copytree(wine.home, spark_home)
    data = Path("wine") / "feast" / "data"
    for table in (spark_home / data).glob("*.parquet"):
        table.unlink()  # nothing of the pandas build left to pass for the Spark build's
    r = project_cli(repo_root, wine.project, "features", "build", "--usecase", "wine",
                    "--home", str(spark_home), "--engine", "spark",
                    "--master", spark_cluster.master_url)
    assert r.returncode == 0, r.stderr[-3000:]
    files = sorted(p.name for p in (wine.home / data).glob("*.parquet"))
    assert files and files == sorted(p.name for p in (spark_home / data).glob("*.parquet"))
    for name in files:
        want = pd.read_parquet(wine.home / data / name)
        got = pd.read_parquet(spark_home / data / name)
        assert "1st.proline" in got.columns and len(got) == len(wine.df)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)


@pytest.mark.parametrize("rows", [178, 1, 0], ids=["whole-export", "one-row", "no-rows"])
def test_scoring_an_unshipped_dataset_on_spark_equals_local_scoring(
    wine, spark_cluster, repo_root, tmp_path, rows
) -> None:
    """The challenger scores the export, a one-row file and a header-only one on the cluster
    as the local engine does: the same rows in the same order (none for the empty file), every
    input column kept under its own name, the probabilities within 1e-6 (the loosest
    tolerance packaging gives a family, Keras's)."""
    source = tmp_path / "in.csv"
    wine.df.head(rows).to_csv(source, index=False)
    args = ["--usecase", "wine", "--home", str(wine.home)]
    local = project_cli(repo_root, wine.project, "score", str(source),
                        str(tmp_path / "local.parquet"), *args)
    assert local.returncode == 0, local.stderr[-3000:]
    spark = project_cli(repo_root, wine.project, "score", str(source), str(tmp_path / "spark"),
                        *args, "--engine", "spark", "--master", spark_cluster.master_url)
    assert spark.returncode == 0, spark.stderr[-3000:]
    assert "executors' scoring check" in spark.stdout
    want = pd.read_parquet(tmp_path / "local.parquet")
    got = pd.read_parquet(tmp_path / "spark")
    assert len(got) == len(want) == rows and list(got.columns) == list(want.columns)
    assert {"1st.proline", "od280/od315 of diluted wines", "Alcohol %"} <= set(got.columns)
    np.testing.assert_allclose(got["probability"], want["probability"], rtol=0, atol=1e-6)
    others = [c for c in want.columns if c != "probability"]
    pd.testing.assert_frame_equal(got[others], want[others], check_dtype=False)
