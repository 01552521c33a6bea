"""What `train_candidate` returns: a TrainedCandidate, flat as dict under the MLflow names."""

from __future__ import annotations

import dataclasses

import pytest

from mlplatform.jobs.models import TrainedCandidate
from mlplatform.packaging.latency import ServingCost

COST = ServingCost(single_p50_ms=1.5, single_p99_ms=3.0, batch_rows_per_s=9000.0, artifact_mb=0.4)


def test_dict_form_has_the_run_its_uri_and_the_logged_metrics():
    trained = TrainedCandidate("abc", "runs:/abc/model", 0.91, 0.88, COST)
    assert trained.to_dict() == {
        "run_id": "abc",
        "model_uri": "runs:/abc/model",
        "auc_overall": 0.91,
        "auc_recent": 0.88,
        "serving_single_p50_ms": 1.5,
        "serving_single_p99_ms": 3.0,
        "serving_batch_rows_per_s": 9000.0,
        "serving_artifact_mb": 0.4,
    }
    assert trained.metrics() == {
        k: v for k, v in trained.to_dict().items() if k not in ("run_id", "model_uri")
    }


def test_an_undefined_recent_auc_is_left_out_not_logged_as_none():
    trained = TrainedCandidate("abc", "runs:/abc/model", 0.91, None, COST)
    assert "auc_recent" not in trained.to_dict()
    assert "auc_recent" not in trained.metrics()


def test_it_is_frozen():
    trained = TrainedCandidate("abc", "runs:/abc/model", 0.91, None, COST)
    with pytest.raises(dataclasses.FrozenInstanceError):
        trained.run_id = "other"
