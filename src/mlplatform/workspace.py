"""Where a use case's runtime state lives (catalogue, batches, quarantine, feature store).

Nothing is created at import time; `Workspace.for_usecase` makes the folders on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The checkout holding usecases/ and schemas/. An installed copy (the component image) points
# at it with MLPLATFORM_REPO_ROOT; a source checkout finds it from this file.
REPO_ROOT = Path(os.environ.get("MLPLATFORM_REPO_ROOT") or Path(__file__).resolve().parents[2])
# Where use cases live: `usecases/<name>.yaml`, `schemas/<name>.pbtxt`, and the root that a
# spec's relative `source.path` starts from. Default the checkout; MLPLATFORM_PROJECT points at
# a folder of one's own (a team's use cases kept outside the platform's repository).
PROJECT_ROOT = Path(os.environ.get("MLPLATFORM_PROJECT") or REPO_ROOT).resolve()


@dataclass(frozen=True)
class Workspace:
    """The folder tree of one use case under the platform home (default `.mlplatform/`)."""

    root: Path

    @classmethod
    def for_usecase(cls, home: Path, usecase: str) -> Workspace:
        """The use case's tree under `home`, its data folders made on first use."""
        ws = cls.locate(home, usecase)
        for sub in (ws.batches, ws.quarantine, ws.feast):
            sub.mkdir(parents=True, exist_ok=True)
        return ws

    @classmethod
    def locate(cls, home: Path, usecase: str) -> Workspace:
        """The use case's tree under `home`, creating nothing (for readers)."""
        return cls(Path(home).resolve() / usecase)

    @property
    def home(self) -> Path:
        return self.root.parent

    @property
    def catalogue(self) -> Path:
        return self.root / "catalogue.db"

    @property
    def batches(self) -> Path:
        return self.root / "batches"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def feast(self) -> Path:
        return self.root / "feast"

    @property
    def reports(self) -> Path:
        """The newest selection report and registration outcome, for people."""
        return self.root / "reports"

    @property
    def monitoring(self) -> Path:
        """Request logs, labels, triggers and the replay's state."""
        return self.root / "monitoring"

    @property
    def requests(self) -> Path:
        """The served-request log the monitoring reads: `make serve` and the cluster's payload
        logger write here."""
        return self.monitoring / "requests"

    @property
    def pipeline_runs(self) -> Path:
        """kfp.local's pipeline root for the subprocess runner."""
        return self.root / "pipeline_runs"

    @property
    def serving(self) -> Path:
        """The local deployment's state (ports, processes, release), shared by the home."""
        return self.home / "serving" / self.root.name

    def batch_dir(self, batch_id: str) -> Path:
        return self.batches / batch_id


def mlflow_dir(home: Path) -> Path:
    """The home's MLflow store: `mlflow.db` (tracking + registry) and `artifacts/`, shared by
    every use case of the home."""
    return Path(home).resolve() / "mlflow"
