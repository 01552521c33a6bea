"""The training pipeline with every task in the component image (kfp.local's DockerRunner on
the machine's engine) ends as the subprocess run does: the same batch, the same winner, the
same probabilities on the held-out rows. Slow (two full credit runs): `make test-containers`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlplatform.cluster import images
from mlplatform.data.catalogue import Catalogue

pytestmark = [pytest.mark.integration, pytest.mark.containers, pytest.mark.slow]


def _run(repo_root, home, *extra):
    return subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", "run", "-u", "credit", "--home", str(home),
         *extra],
        capture_output=True, text=True, cwd=repo_root, timeout=3000,
    )


def _winner_predictions(home) -> tuple[dict, pd.DataFrame]:
    import mlflow

    from mlplatform.tracking import use_workspace
    from mlplatform.training.run import held_out_predictions

    reg = json.loads((home / "credit" / "reports" / "registration.json").read_text())
    # Tracking and registry both: a registry URI an earlier test set in this process would
    # otherwise answer for this home's versions.
    use_workspace(home, "credit")
    client = mlflow.MlflowClient()
    run_id = client.get_model_version("credit-classifier", reg["version"]).run_id
    return reg, held_out_predictions(run_id)


def test_containers_and_subprocesses_give_the_same_model(repo_root, tmp_path):
    images.build(repo_root, ("component",))
    sub_home, box_home = tmp_path / "subprocess", tmp_path / "containers"
    sub = _run(repo_root, sub_home)
    assert sub.returncode == 0, sub.stderr[-3000:]
    box = _run(repo_root, box_home, "--runner", "container")
    assert box.returncode == 0, box.stderr[-3000:]
    (a,) = Catalogue(sub_home / "credit" / "catalogue.db").list("credit")
    (b,) = Catalogue(box_home / "credit" / "catalogue.db").list("credit")
    assert a.batch_id == b.batch_id and b.status == a.status
    reg_a, pred_a = _winner_predictions(sub_home)
    reg_b, pred_b = _winner_predictions(box_home)
    assert reg_a["family"] == reg_b["family"] and reg_b["alias"] == "challenger"
    assert list(pred_a["id"]) == list(pred_b["id"])
    np.testing.assert_allclose(pred_a["probability"], pred_b["probability"], atol=1e-6)
