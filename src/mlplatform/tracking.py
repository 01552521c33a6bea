"""MLflow tracking and registry location of a workspace, and the lineage every run records."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from mlplatform.workspace import REPO_ROOT, mlflow_dir


def tracking_uri(home: Path) -> str:
    """SQLite-backed MLflow under the platform home (a server URI can replace it)."""
    db = mlflow_dir(home) / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def artifact_root(home: Path) -> str:
    root = mlflow_dir(home) / "artifacts"
    root.mkdir(parents=True, exist_ok=True)
    return root.as_uri()


def use_workspace(home: Path, usecase: str, tracking: str | None = None) -> str:
    """Point MLflow at the workspace's store (or MLPLATFORM_TRACKING_URI) and the use case's
    experiment; returns the experiment id."""
    import os

    import mlflow

    # Progress bars for local artifact copies flood pipeline logs; nothing is lost without them.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLPLATFORM_TRACKING_URI points every job at a server or PostgreSQL. Not MLflow's own
    # MLFLOW_TRACKING_URI: mlflow.set_tracking_uri() writes that variable, so it would leak one
    # workspace's store into the next job and into every subprocess.
    uri = tracking or os.environ.get("MLPLATFORM_TRACKING_URI") or tracking_uri(home)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = f"mlplatform-{usecase}"
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        return mlflow.create_experiment(name, artifact_location=artifact_root(home))
    return exp.experiment_id


@contextlib.contextmanager
def mlflow_uris_kept() -> Iterator[None]:
    """MLflow's process-wide tracking and registry URIs as they were before the block, when it
    ends, however it ends (use_workspace and scratch registries change them for everyone)."""
    # set_tracking_uri/set_registry_uri mirror what they set into these variables.
    before = os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI")
    try:
        yield
    finally:
        if (os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI")) != before:
            import mlflow

            mlflow.set_tracking_uri(before[0])  # None unsets its variable too
            mlflow.set_registry_uri(before[1])
            if before[1] is None:  # set_registry_uri(None) leaves the variable behind
                os.environ.pop("MLFLOW_REGISTRY_URI", None)


def git_commit() -> str:
    """The code version: commit id, with `-dirty` when the tree has uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def registered_model_name(usecase: str) -> str:
    return f"{usecase}-classifier"
