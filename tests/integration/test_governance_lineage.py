"""Lineage, reproduction from lineage, and model cards, on real MLflow runs and registry.

A copy of the `trained_taxi` home: v1 is the shared trained run registered (read-only: no
artifact is logged to it); the reproduction trains a run of this module's own, which is then
evaluated (TFMA) and registered through `register_job`, whose hook publishes the card.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlplatform.cli import app
from mlplatform.registry import models as reg

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registered(trained_taxi, tmp_path_factory):
    """The shared run as taxi-classifier v1, with battery results, in a home of our own."""
    home = trained_taxi.own_home(tmp_path_factory, "lineage")
    run = trained_taxi.run
    v = reg.register(
        trained_taxi.spec,
        run.run_id,
        run.model_uri,
        {"family": "logistic", "selection_quality": f"{run.auc_recent:.6f}"},
    )
    reg.record_battery(trained_taxi.spec, v, {"unit": (True, "64 rows: deterministic")})
    return home, v


def _cli(home: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--home", str(home)])


@pytest.fixture(scope="module")
def reproduced(registered):
    """`mlplatform lineage taxi 1 --reproduce`: retrains and compares; returns the new run."""
    home, v = registered
    out = _cli(home, "lineage", "taxi", v, "--reproduce")
    assert out.exit_code == 0, out.output
    return out.output, re.search(r"reproduction of v\d+: run (\w+)", out.output).group(1)


def test_lineage_names_every_source(trained_taxi, registered):
    home, v = registered
    out = _cli(home, "lineage", "taxi", v)
    assert out.exit_code == 0, out.output
    tags = reg.version_tags(trained_taxi.spec, v)
    text = out.output
    assert f"code commit    {tags['git_commit']}" in text
    assert f"spec hash      {trained_taxi.spec.spec_hash()}" in text
    batch = tags["data_batches"].split(",")[0]
    assert re.search(rf"{batch[:12]}\s+accepted\s+15002 rows\s+data.csv", text)  # the catalogue
    assert f"sha256 {tags['training_set_sha256']}" in text
    assert "taxi_trip_features: pickup_community_area, fare, trip_start_month," in text
    assert "taxi_pickup_area_stats: pickup_area_stats_trips, pickup_area_stats_mean_fare" in text
    assert "param_C = 1.0" in text and "auc_overall = " in text
    assert "unit: passed: 64 rows: deterministic" in text
    assert "approvals:\n    none" in text
    missing = _cli(home, "lineage", "taxi", "999")
    assert missing.exit_code == 2 and "taxi-classifier has no version 999" in missing.output


def test_reproduction_matches_recorded_metrics(reproduced):
    text, _ = reproduced
    assert re.search(
        r"auc_overall\s+recorded [\d.]+\s+reproduced [\d.]+\s+diff [-+.\de]+\s+ok", text
    )
    assert re.search(r"auc_recent\s+recorded .* ok", text)
    assert "reproduced within tolerance" in text and "MISMATCH" not in text


def test_reproduction_refuses_a_changed_training_set(trained_taxi, registered):
    home, _ = registered
    run = trained_taxi.run
    spec = trained_taxi.spec
    v = reg.register(spec, run.run_id, run.model_uri, {"family": "logistic"})
    reg.client().set_model_version_tag(
        f"{spec.name}-classifier", v, "training_set_sha256", "0" * 64
    )
    out = _cli(home, "lineage", "taxi", v, "--reproduce")
    assert out.exit_code == 2
    assert "changed since registration" in out.output and "not the training set" in out.output


def test_register_job_publishes_the_model_card(trained_taxi, registered, reproduced, tmp_path):
    """The hook at the end of `register_job`: card logged (md + html) to the version's run."""
    import mlflow

    from mlplatform.jobs.models import register_job

    home, _ = registered
    spec = trained_taxi.spec
    _, run_id = reproduced  # this module's own run: logging to it disturbs no other test
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    # What evaluate_job would log (its TFMA run is the slow test below): the measured AUC.
    client.log_metric(run_id, "selection_quality", run.data.metrics["auc_recent"])
    client.set_tag(run_id, "fairness_passed", "true")
    outcome = register_job(
        "taxi", run_id, run.data.tags["model_uri"], trained_taxi.training_set, home
    )
    v = outcome.version
    assert outcome.model_card == f"runs:/{run_id}/model_card/taxi-v{v}.md"
    assert reg.version_tags(spec, v)["model_card"] == outcome.model_card
    logged = {Path(f.path).name for f in client.list_artifacts(run_id, "model_card")}
    assert logged == {f"taxi-v{v}.md", f"taxi-v{v}.html"}
    card = Path(mlflow.artifacts.download_artifacts(outcome.model_card, dst_path=str(tmp_path)))
    text = card.read_text()
    assert f"# Model card: taxi-classifier v{v}" in text
    assert spec.intended_use[:40] in text and spec.model_card.ethical_considerations[:40] in text
    assert "declares no protected attributes" in text  # taxi has none: said, not invented
    p99 = run.data.metrics["serving_single_p99_ms"]
    assert f"| single-row p99 | {p99:.4g} | ms |" in text
    for check in ("unit", "integration", "load", "fairness"):
        assert f"| {check} | " in text  # the battery register_job just ran
    assert "_Not measured: the run logged no TFMA slice metrics" in text

    out = _cli(home, "card", "taxi", v, "--out", str(tmp_path / "cards"))
    assert out.exit_code == 0, out.output
    html = (tmp_path / "cards" / f"taxi-v{v}.html").read_text()
    assert "<table>" in html and f"taxi-classifier v{v}" in html
    assert (tmp_path / "cards" / f"taxi-v{v}.md").read_text().startswith("# Model card")


@pytest.mark.slow
def test_card_carries_tfma_slices_after_evaluation(trained_taxi, registered, reproduced):
    """evaluate_job (TFMA, ~20-60 s) on the module's run, then the card of its version."""
    import mlflow

    from mlplatform.governance.cards import build_markdown
    from mlplatform.jobs.models import evaluate_job

    home, _ = registered
    _, run_id = reproduced
    evaluate_job("taxi", run_id, home)
    run = mlflow.get_run(run_id)
    v = reg.register(trained_taxi.spec, run_id, run.data.tags["model_uri"], {"family": "logistic"})
    text = build_markdown(trained_taxi.spec, v, home)
    assert "| payment_type | Credit Card |" in text  # TFMA slice rows, from the logged table
    assert f"| tfma_auc | {run.data.metrics['tfma_auc']:.4g} |" in text
    assert "Not measured" not in text


def test_card_of_an_unevaluated_run_says_what_was_not_measured(trained_taxi, registered):
    from mlplatform.governance.cards import build_markdown

    home, v = registered
    text = build_markdown(trained_taxi.spec, v, home)  # built only: the shared run stays as is
    assert "_Not measured: the run logged no TFMA slice metrics" in text
    assert "| single-row p99 |" in text  # training measured the serving cost
