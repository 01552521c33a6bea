"""The training pipeline runs end to end with kfp.local (raw CSV to a registered,
battery-passing challenger), stops on a bad batch, and compiles to YAML that kfp loads."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
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
    steps = {p.name for p in runs[0].iterdir()}
    assert steps >= {
        "ingest-data",
        "validate-data",
        "build-features",
        "train-model",
        "train-model-2",
        "train-model-3",
        "select-model",
        "register-model",
    }
    ts = next((runs[0] / "build-features").rglob("training_set"))
    assert len(pd.read_parquet(ts)) == 15002
    accepted = Catalogue(home / "taxi" / "catalogue.db").list("taxi", BatchStatus.ACCEPTED)
    assert len(accepted) == 1 and accepted[0].source == str(source_of(taxi))
    # The winner is registered with lineage, passed its battery and holds `challenger`.
    reg = json.loads((home / "taxi" / "reports" / "registration.json").read_text())
    assert reg["battery_passed"] and reg["alias"] == "challenger", reg["battery"]
    report = (home / "taxi" / "reports" / "selection.md").read_text()
    for family in ("logistic", "xgboost", "keras"):
        assert family in report
    assert f"Winner: {reg['family']}" in report
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    # Explicit URIs: earlier tests in this process pointed MLflow's globals elsewhere.
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias("taxi-classifier", "challenger")
    assert version.tags["data_batches"] == accepted[0].batch_id
    assert version.tags["spec_hash"] == taxi.spec_hash()
    assert version.tags["battery.load"].startswith("passed")
    run = client.get_run(version.run_id)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/slices.csv" in artifacts and "evaluation/tfma" in artifacts
    listed = _run(repo_root, "models", "list", "-u", "taxi", "--home", str(home))
    assert "challenger" in listed.stdout
    _reads_like_a_product(out, home, reg)
    _kfp_native_artifacts(runs[0], reg)


def _reads_like_a_product(out, home, reg) -> None:
    """A line per task, named by family, with its result; kfp.local's own output, the tasks'
    logs and library warnings in the run's log file instead of the terminal."""
    lines = out.stdout.splitlines() + out.stderr.splitlines()
    assert len(lines) < 60, "\n".join(lines)
    for task in ("train-logistic", "train-xgboost", "train-keras", "evaluate-keras"):
        assert any(task in line and "✓" in line for line in out.stdout.splitlines()), task
    assert "accepted (15,002 rows)" in out.stdout and "AUC 0." in out.stdout
    assert f"Winner: {reg['family']}" in out.stdout
    (log,) = (home / "taxi" / "pipeline_runs" / "logs").glob("training-*.log")
    assert f"task logs: {log}" in out.stdout
    text = log.read_text()
    assert "Executing task" in text and "finished with status" in text
    assert "Executing task" not in out.stdout + out.stderr


def _kfp_native_artifacts(run_dir, reg) -> None:
    """What the KFP UI shows: the gate's HTML view, metrics and curves per candidate, the
    selection report with its plot inside, the registered model's URI."""
    (view,) = (run_dir / "validate-data").rglob("view")
    page = view.read_text()
    assert "<b>accepted</b>" in page and "TFDV statistics" in page and "facets" in page.lower()
    # Metrics and curves live in the artifact's metadata (what the UI draws), not in a file.
    out = json.loads((run_dir / "evaluate-model" / "executor_output.json").read_text())
    metrics = out["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert 0.5 < metrics["tfma_auc"] <= 1 and "selection_quality" in metrics
    curves = out["artifacts"]["curves"]["artifacts"][0]["metadata"]
    assert len(curves["confidenceMetrics"]) > 10
    matrix = curves["confusionMatrix"]["rows"]
    assert len(matrix) == 2 and sum(sum(r["row"]) for r in matrix) > 100  # held-out rows
    (report,) = (run_dir / "select-model").rglob("report")
    assert "data:image/png;base64," in report.read_text()
    (model,) = (run_dir / "register-model").rglob("model")
    assert model.read_text().strip() == f"models:/taxi-classifier/{reg['version']}"


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
    spec = next(yaml.safe_load_all(checked_in.read_text()))  # 2nd document: platform spec
    tasks = spec["root"]["dag"]["tasks"]
    assert {
        "ingest-data",
        "validate-data",
        "build-features",
        "select-model",
        "register-model",
    } <= set(tasks)
    names = {t["taskInfo"]["name"] for t in tasks.values()}
    assert {"train-logistic", "train-xgboost", "train-keras", "evaluate-keras"} <= names
    types = {
        (comp, name): art["artifactType"]["schemaTitle"]
        for comp, body in spec["components"].items()
        for name, art in body.get("outputDefinitions", {}).get("artifacts", {}).items()
    }
    assert types[("comp-validate-data", "view")] == "system.HTML"
    assert types[("comp-evaluate-model", "metrics")] == "system.Metrics"
    assert types[("comp-evaluate-model", "curves")] == "system.ClassificationMetrics"
    assert types[("comp-select-model", "report")] == "system.Markdown"
    assert types[("comp-register-model", "model")] == "system.Model"
    register = spec["root"]["dag"]["tasks"]["register-model"]
    assert register["retryPolicy"]["maxRetryCount"] == 2
    loaded = components.load_component_from_file(str(checked_in))
    assert loaded.name == "mlplatform-training"
    from pipelines.batch_scoring import compile_to as compile_batch

    batch = compile_batch(tmp_path)
    assert (repo_root / "pipelines" / "compiled" / "batch_scoring.yaml").read_text() == (
        batch.read_text()
    )
