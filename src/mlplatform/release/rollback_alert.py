"""The platform's `canary_rolled_back` alert: raised by every canary that rolls back (the local
controller, the replay's canary, an operator's manual rollback on the cluster), through the
spec's sink (Alertmanager on a cluster) like a quarantine or a retraining trigger."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlplatform.alerts import raise_alert
from mlplatform.spec import UseCase
from mlplatform.workspace import Workspace


def raise_rollback_alert(spec: UseCase, home: Path, version: str, reason: str) -> dict:
    """Deliver one `canary_rolled_back` alert for `version` of the use case; returns the event."""
    ws = Workspace.for_usecase(home, spec.name)
    return raise_alert(
        spec.alerts, ws.root, "canary_rolled_back", f"v{version} rolled back: {reason}",
        usecase=spec.name, version=str(version),
    )


def rollback_alerter(spec: UseCase, home: Path) -> Callable[[str, str], None]:
    """The `on_rollback(version, reason)` hook of a CanaryController for this use case."""

    def on_rollback(version: str, reason: str) -> None:
        raise_rollback_alert(spec, home, version, reason)

    return on_rollback
