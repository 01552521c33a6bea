"""The MLflow registry on PostgreSQL (the production backend): a real server, started here."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from mlplatform.governance.decision import GateDecision, champion_challenger, set_challenger
from mlplatform.jobs.data import features_job
from mlplatform.jobs.models import train_candidate
from mlplatform.registry import models as reg
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.schema import build_schema

from ..conftest import source_of

pytestmark = pytest.mark.integration


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root, a laptop usually does not.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture
def postgres_uri():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.fail("PostgreSQL server is not installed: `make test` installs Debian postgresql")
    bindir = Path(bins[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="mlp-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-w",
                "-l",
                str(data / "log"),
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "mlflow",
                ]
            ),
            check=True,
        )
        # psycopg2 is the driver in the lock; SQLAlchemy 2.1 would otherwise pick psycopg 3.
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


def test_registry_lifecycle_on_postgres(postgres_uri, taxi, tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLATFORM_TRACKING_URI", postgres_uri)
    from mlplatform.workspace import Workspace

    home = tmp_path / "home"
    ws = Workspace.for_usecase(home, "taxi")
    assert Gate(taxi, build_schema(taxi), ws).process(source_of(taxi)).accepted
    ts = home / "training_set.parquet"
    features_job("taxi", home, ts)
    out = train_candidate("taxi", "logistic", ts, home)
    version = reg.register(
        taxi,
        out.run_id,
        out.model_uri,
        {
            "family": "logistic",
            "selection_quality": str(out.auc_recent),
            "fairness_passed": "true",
        },
    )
    reg.record_battery(taxi, version, {"unit": (True, "ok")})
    # The gate's own rules are tested on SQLite; here the registry operations run on PostgreSQL.
    decision = champion_challenger(taxi, version)
    assert decision.champion_version is None
    set_challenger(taxi, version, GateDecision(True, "test", decision.challenger_quality))
    assert reg.alias_version(taxi, reg.CHALLENGER) == version
    assert reg.version_tags(taxi, version)["spec_hash"] == taxi.spec_hash()
    import mlflow

    assert mlflow.get_tracking_uri().startswith("postgresql+psycopg2://")
