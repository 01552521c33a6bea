"""The credit use case end to end, fairness gate included (slow: `make test-slow`)."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_credit_pipeline_ends_with_a_challenger_or_a_named_fail(tmp_path, repo_root):
    """A FAIL is never registered; a PASS or an INCONCLUSIVE becomes the challenger, tagged
    with its verdict (an INCONCLUSIVE champion needs the business owner's acceptance)."""
    home = tmp_path / "home"
    out = subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", "run", "-u", "credit", "--home", str(home)],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=1800,
    )
    report = home / "credit" / "reports" / "selection.md"
    assert report.exists(), out.stderr[-3000:]
    text = report.read_text()
    assert "fairness" in text
    if out.returncode != 0:
        # Every candidate refused: the report must say which group and metric FAILed.
        assert "No candidate satisfies" in text and "fairness gate FAIL" in text
        assert "allowed 0.100: FAIL" in text
        return
    reg = json.loads((home / "credit" / "reports" / "registration.json").read_text())
    assert reg["alias"] == "challenger" and reg["battery_passed"], reg
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("credit-classifier", reg["version"])
    verdict = version.tags["fairness_verdict"]
    assert verdict in ("pass", "inconclusive")
    assert reg["battery"]["fairness"].startswith(f"passed: {verdict}")
    assert f"| {verdict.upper()} |" in text
