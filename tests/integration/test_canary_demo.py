"""`make canary` end to end on real processes: a bad challenger rolled back, a good one
promoted, every decision printed, no client request failed, the user's registry untouched.
Also the CLI's refusals when there is nothing to deploy or release."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mlplatform.registry import models as reg
from mlplatform.release.demo import DemoError, run_demo
from mlplatform.release.files import load_policy
from mlplatform.tracking import tracking_uri
from mlplatform.workspace import REPO_ROOT

pytestmark = pytest.mark.integration
CLI = REPO_ROOT / ".venv" / "bin" / "mlplatform"


@pytest.fixture(scope="module")
def registered(trained_taxi, tmp_path_factory):
    home = trained_taxi.own_home(tmp_path_factory, "demo")
    out = trained_taxi.run
    version = reg.register(
        trained_taxi.spec, out.run_id, out.model_uri, {"family": "logistic"}
    )
    return trained_taxi.spec, home, version


@pytest.fixture(scope="module")
def candidate(trained_taxi, tmp_path_factory):
    """A battery-passing `challenger`, registered the way the pipeline does it."""
    from mlplatform.jobs.models import evaluate_job, register_job

    home = tmp_path_factory.mktemp("demo-candidate") / "home"
    shutil.copytree(trained_taxi.home, home)
    out = trained_taxi.run
    evaluate_job("taxi", out.run_id, home)
    done = register_job("taxi", out.run_id, out.model_uri, trained_taxi.training_set, home)
    assert done.alias == "challenger", done
    return trained_taxi.spec, home, done.version


@pytest.mark.slow
def test_demo_rolls_back_the_bad_and_promotes_the_good(candidate):
    spec, home, version = candidate
    policy = load_policy(REPO_ROOT / "releases" / "demo.yaml", interval_s=3.0, iterations=3)
    lines: list[str] = []
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    acts = run_demo(spec, home, policy, rate=120, log=lines.append)
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before  # not the copy
    assert [a.result.status for a in acts] == ["rolled_back", "promoted"], "\n".join(lines)
    assert all(set(a.codes) == {200} for a in acts), [a.codes for a in acts]
    text = "\n".join(lines)
    assert "round 1:" in text and "challenger" in text and "champion" in text
    assert f"v{version} is now the champion" in text  # through the two-approval gate
    assert "approved as tech-lead by demo-tech-lead" in text
    from mlflow import MlflowClient

    aliases = MlflowClient(tracking_uri(home)).get_registered_model("taxi-classifier").aliases
    assert "champion" not in aliases  # the demo promoted in its copy only


def test_demo_without_a_registry_says_run_make_run(tmp_path, taxi):
    with pytest.raises(DemoError, match="make run"):
        run_demo(taxi, tmp_path / "empty", load_policy())


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120)


def test_deploy_and_canary_refuse_clearly(registered, tmp_path):
    _, home, _ = registered
    r = _cli("deploy", "-u", "taxi", "--home", str(tmp_path / "none"))
    assert r.returncode == 2 and "run `make run` first" in r.stderr
    r = _cli("deploy", "-u", "taxi", "--home", str(home))
    assert r.returncode == 2 and "no 'champion' alias" in r.stderr
    r = _cli("canary", "start", "-u", "taxi", "--home", str(home))
    assert r.returncode == 2 and "mlplatform deploy" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("canary:\n  share: 5\n")
    r = _cli("canary", "demo", "-u", "taxi", "--home", str(home), "--release", str(bad))
    assert r.returncode == 1 and "unknown canary setting 'share'" in r.stderr
