"""Registry lifecycle: lineage on versions, battery-gated `challenger`, champion-challenger gate.

Runs real MLflow (SQLite backend) on a logistic model trained from the taxi Feast training set.
"""

from __future__ import annotations

import mlflow
import pytest

from mlplatform.governance.decision import champion_challenger, set_challenger
from mlplatform.registry import models as reg

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(trained_taxi, tmp_path_factory):
    home = trained_taxi.own_home(tmp_path_factory, "registry")
    return trained_taxi.spec, home, trained_taxi.run


def _register(spec, out, quality):
    return reg.register(
        spec,
        out.run_id,
        out.model_uri,
        {"family": "logistic", "selection_quality": str(quality), "fairness_passed": "true"},
    )


def test_version_carries_lineage(trained):
    spec, _, out = trained
    v = _register(spec, out, out.auc_recent)
    tags = reg.version_tags(spec, v)
    assert tags["spec_hash"] == spec.spec_hash()
    assert len(tags["data_batches"].split(",")[0]) == 64  # sha256 of the training batch
    assert tags["git_commit"] and tags["run_id"] == out.run_id
    assert float(tags["metric.auc_overall"]) > 0.8


def test_failed_battery_blocks_challenger(trained):
    spec, _, out = trained
    v = _register(spec, out, out.auc_recent)
    with pytest.raises(reg.PromotionRefused, match="has not run"):
        set_challenger(spec, v, champion_challenger(spec, v))
    reg.record_battery(spec, v, {"unit": (True, ""), "load": (False, "p99 31 ms > 10 ms")})
    with pytest.raises(reg.PromotionRefused, match="load: failed: p99 31 ms"):
        set_challenger(spec, v, champion_challenger(spec, v))
    assert reg.alias_version(spec, reg.CHALLENGER) != v


def test_challenger_must_beat_champion_by_margin(trained):
    spec, _, out = trained
    q = out.auc_recent
    champ = _register(spec, out, q)
    reg.record_battery(spec, champ, {"unit": (True, "")})
    reg.client().set_registered_model_alias(f"{spec.name}-classifier", reg.CHAMPION, champ)
    same = _register(spec, out, q + spec.selection.champion_margin / 2)
    reg.record_battery(spec, same, {"unit": (True, "")})
    decision = champion_challenger(spec, same)
    assert not decision.passed and "required margin" in decision.reason
    with pytest.raises(reg.PromotionRefused, match="stays a candidate"):
        set_challenger(spec, same, decision)
    better = _register(spec, out, q + 0.01)
    reg.record_battery(spec, better, {"unit": (True, "")})
    decision = champion_challenger(spec, better)
    assert decision.passed and decision.champion_version == champ
    set_challenger(spec, better, decision)
    assert reg.alias_version(spec, reg.CHALLENGER) == better


def test_artifact_loads_and_predicts_from_registry(trained):
    spec, _, out = trained
    v = _register(spec, out, out.auc_recent)
    model = mlflow.pyfunc.load_model(f"models:/{spec.name}-classifier/{v}")
    example = model.input_example
    pred = model.predict(example)
    assert list(pred.columns) == ["probability", "prediction"]
    assert ((pred["probability"] >= 0) & (pred["probability"] <= 1)).all()
    reqs = mlflow.pyfunc.get_model_dependencies(f"models:/{spec.name}-classifier/{v}")
    with open(reqs) as fh:
        pins = fh.read().splitlines()
    assert all("==" in p for p in pins if p and not p.startswith("#"))


def test_package_verify_rebuilds_env_with_identical_predictions(trained, tmp_path):
    from mlplatform.packaging.verify import verify

    spec, _, out = trained
    model = mlflow.pyfunc.load_model(out.model_uri)
    sample = model.input_example
    result = verify(out.model_uri, sample, tmp_path / "verify")
    assert result.passed and result.max_abs_diff == 0.0
    assert str(tmp_path) in result.python  # predictions came from the rebuilt interpreter


def test_batch_scoring_keeps_versions_and_matches_pyfunc(trained, tmp_path):
    import pandas as pd

    from mlplatform.jobs.scoring import score_file

    spec, home, out = trained
    model = mlflow.pyfunc.load_model(out.model_uri)
    source = home / "training_set.parquet"
    result = score_file(
        model,
        "taxi-classifier/test",
        source,
        tmp_path / "scored.parquet",
        chunk_rows=4000,
        progress=False,
    )
    scored = pd.read_parquet(result.output)
    assert result.rows == len(scored) == len(pd.read_parquet(source))
    assert set(scored["model_version"]) == {"taxi-classifier/test"}
    assert scored["data_version"].str.len().eq(64).all()
    # One chunk of all 15,002 rows: a request's 10,000-row cap is not batch scoring's.
    whole = score_file(model, "taxi-classifier/test", source, tmp_path / "one-chunk.parquet")
    assert whole.rows == result.rows
    first = model.predict(model.input_example)
    assert first["probability"].min() >= 0 and first["probability"].max() <= 1
    bad = tmp_path / "bad.csv"
    pd.read_parquet(source).drop(columns=["fare"]).head(10).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="fare"):
        score_file(model, "v", bad, tmp_path / "x.parquet", progress=False)
    assert not (tmp_path / "x.parquet").exists()  # no half-written output
    # The smallest input: no rows, as CSV or Parquet, gives an empty output with the columns.
    for name, write in (("none.csv", lambda f, p: f.to_csv(p, index=False)),
                        ("none.parquet", lambda f, p: f.to_parquet(p))):
        write(pd.read_parquet(source).head(0), tmp_path / name)
        empty = score_file(model, "v", tmp_path / name, tmp_path / f"{name}.out", progress=False)
        got = pd.read_parquet(empty.output)
        assert empty.rows == len(got) == 0 and list(got.columns) == list(scored.columns)


def test_batch_scoring_refuses_a_model_this_environment_scores_differently(
    trained, trained_taxi, tmp_path
):
    """No file of skewed scores: the packed reference rows are re-scored before any chunk."""
    from mlplatform.jobs.scoring import score_file
    from mlplatform.packaging.scoring_check import ScoringMismatch

    spec, home, out = trained
    model = mlflow.pyfunc.load_model(str(trained_taxi.skewed_model(tmp_path / "model")))
    with pytest.raises(ScoringMismatch, match="requirements.txt"):
        source = home / "training_set.parquet"
        score_file(model, "v", source, tmp_path / "x.parquet", progress=False)
    assert not (tmp_path / "x.parquet").exists()
