"""A block that points MLflow elsewhere (a scratch registry, another workspace) leaves the
process's tracking and registry URIs as it found them, set or unset."""

from __future__ import annotations

import os

import mlflow
import pytest

from mlplatform.tracking import mlflow_uris_kept


def test_uris_set_inside_are_undone_even_on_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    unset = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    scratch = f"sqlite:///{tmp_path / 'scratch.db'}"
    with pytest.raises(RuntimeError), mlflow_uris_kept():
        mlflow.set_tracking_uri(scratch)
        mlflow.set_registry_uri(scratch)
        raise RuntimeError("the block failed")
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == unset

    mine = f"sqlite:///{tmp_path / 'mine.db'}"
    mlflow.set_tracking_uri(mine)
    mlflow.set_registry_uri(mine)
    with mlflow_uris_kept():
        mlflow.set_tracking_uri(scratch)
        mlflow.set_registry_uri(scratch)
    assert mlflow.get_tracking_uri() == mine and mlflow.get_registry_uri() == mine
