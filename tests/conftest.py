"""Shared fixtures: the repository, the shipped data, and throw-away workspaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlplatform.spec import UseCase, load_spec
from mlplatform.tracking import mlflow_uris_kept
from mlplatform.workspace import REPO_ROOT, Workspace

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module", autouse=True)
def _module_keeps_mlflow_uris_to_itself():
    """Whatever tracking and registry URIs a test module points MLflow at (use_workspace sets
    them process-wide) are undone when the module ends, so no later module reads a store it
    did not choose (a registry left pointing at a stopped PostgreSQL, say)."""
    with mlflow_uris_kept():
        yield


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the tests need ../shared/data beside the repo")
    return SHARED_DATA


@pytest.fixture(scope="session", params=["taxi", "credit"])
def usecase(request) -> UseCase:
    return load_spec(REPO_ROOT / "usecases" / f"{request.param}.yaml")


@pytest.fixture(scope="session")
def taxi() -> UseCase:
    return load_spec(REPO_ROOT / "usecases" / "taxi.yaml")


@pytest.fixture(scope="session")
def credit() -> UseCase:
    return load_spec(REPO_ROOT / "usecases" / "credit.yaml")


def source_of(spec: UseCase) -> Path:
    return (REPO_ROOT / spec.source.path).resolve()


@pytest.fixture
def workspace_factory(tmp_path):
    def make(spec: UseCase) -> Workspace:
        return Workspace.for_usecase(tmp_path / "home", spec.name)

    return make
