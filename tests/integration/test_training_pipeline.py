"""The training pipeline's first stage runs locally with kfp.local, stops on a bad batch, and
compiles to YAML that kfp loads."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from mlplatform.data.catalogue import BatchStatus, Catalogue

from ..conftest import source_of

pytestmark = pytest.mark.integration


def _run(repo_root, *args):
    return subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", *args],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=900,
    )


def test_pipeline_runs_locally_and_reports_locations(tmp_path, repo_root, taxi):
    home = tmp_path / "home"
    out = _run(repo_root, "run", "-u", "taxi", "--home", str(home))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "where everything went" in out.stdout and "15002 rows" in out.stdout
    runs = list((home / "taxi" / "pipeline_runs").glob("mlplatform-training-*"))
    assert len(runs) == 1
    assert {p.name for p in runs[0].iterdir()} >= {"ingest-data", "validate-data", "build-features"}
    ts = next((runs[0] / "build-features").rglob("training_set"))
    assert len(pd.read_parquet(ts)) == 15002
    accepted = Catalogue(home / "taxi" / "catalogue.db").list("taxi", BatchStatus.ACCEPTED)
    assert len(accepted) == 1 and accepted[0].source == str(source_of(taxi))


def test_pipeline_stops_on_a_bad_batch(tmp_path, repo_root, taxi):
    df = pd.read_csv(source_of(taxi))
    df["fare"] = df["fare"] * 100  # cents instead of dollars
    bad = tmp_path / "cents.csv"
    df.to_csv(bad, index=False)
    home = tmp_path / "home"
    out = _run(repo_root, "run", "-u", "taxi", "--source", str(bad), "--home", str(home))
    assert out.returncode == 3, out.stderr[-3000:]
    assert "quarantined" in out.stderr and "fare" in out.stderr
    assert "mlplatform quarantine show" in out.stderr
    assert not (home / "taxi" / "feast" / "last_build.json").exists()  # features never built


def test_compiled_pipeline_is_current_and_loads(tmp_path, repo_root):
    from kfp import components

    from pipelines.training import compile_to

    fresh = compile_to(tmp_path)
    checked_in = repo_root / "pipelines" / "compiled" / "training.yaml"
    assert checked_in.read_text() == fresh.read_text(), "run `make compile` and commit"
    spec = yaml.safe_load(checked_in.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest-data", "validate-data", "build-features"}
    loaded = components.load_component_from_file(str(checked_in))
    assert loaded.name == "mlplatform-training"
