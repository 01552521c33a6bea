"""Feast definitions come from the spec, not a second column list."""

from __future__ import annotations

from pathlib import Path

from feast import FeatureService, FeatureView

from mlplatform.features.definitions import build_definitions, feature_refs


def test_views_follow_the_spec(usecase):
    objs = build_definitions(usecase, Path("/tmp/unused"))
    rows = objs[f"{usecase.name}_{usecase.entity.name}_features"]
    assert isinstance(rows, FeatureView)
    assert {f.name for f in rows.features} == {c.name for c in usecase.feature_columns}
    assert usecase.label not in {f.name for f in rows.features}
    assert isinstance(objs[f"{usecase.name}_training"], FeatureService)
    for agg in usecase.features.aggregates:
        assert objs[f"{usecase.name}_{agg.name}"].online


def test_online_refs_skip_derived_keys(taxi, credit):
    assert all(":" in r and "trip_features" not in r for r in feature_refs(taxi, Path("/x"), True))
    assert any(
        r.startswith("credit_client_features:") for r in feature_refs(credit, Path("/x"), True)
    )


def test_feature_repo_module_exposes_definitions(repo_root, monkeypatch):
    import importlib.util

    monkeypatch.setenv("MLPLATFORM_USECASE", "credit")
    spec = importlib.util.spec_from_file_location("fr", repo_root / "feature_repo" / "features.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert isinstance(mod.credit_client_features, FeatureView)
