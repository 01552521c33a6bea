"""The monitoring pipeline's jobs: judge the new traffic, retrain when a trigger asks, end with
a canary request for the new challenger.

kfp.local runs no `dsl.If` (ADR 0031), so the pipeline is a straight line and every retraining
stage takes the first task's `retrain` decision: when it is False a stage returns at once with
an empty result, and the run shows `skipped` against it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlplatform.data.catalogue import now_iso
from mlplatform.monitoring.triggers import TriggerPolicy
from mlplatform.monitoring.watch import WindowVerdict, close_retraining, judge_window
from mlplatform.spec import load_usecase
from mlplatform.workspace import Workspace

if TYPE_CHECKING:
    from mlplatform.jobs.models import Registration

log = logging.getLogger(__name__)
SKIPPED = "skipped"


def parse_families(families: str) -> list[str]:
    """'logistic,xgboost' -> ['logistic', 'xgboost']; an unknown name is an error naming it."""
    from mlplatform.training.families import FAMILIES

    names = [f.strip() for f in families.split(",") if f.strip()]
    unknown = [f for f in names if f not in FAMILIES]
    if unknown or not names:
        raise ValueError(
            f"families {families!r}: expected a comma-separated subset of {', '.join(FAMILIES)}"
        )
    return names


def monitor_job(
    usecase: str, home: Path, request_log: Path | str = "", policy: TriggerPolicy | None = None
) -> WindowVerdict:
    """Judge the window since the last run (`request_log` "": the workspace's); the verdict is
    also written under `<workspace>/monitoring/windows/` for people."""
    spec = load_usecase(usecase)
    request_log = Path(request_log) if request_log else Workspace.locate(home, spec.name).requests
    if not request_log.is_dir():
        raise FileNotFoundError(
            f"request log {request_log}: no such folder (start the model server with "
            f"--request-log {request_log}, or point the payload logger's --log there)"
        )
    verdict = judge_window(spec, Path(home), request_log, policy)
    folder = Workspace.for_usecase(home, spec.name).monitoring / "windows"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}"
    body = json.dumps(verdict.__dict__, indent=2, default=str)
    (folder / f"window-{stamp}.json").write_text(body)
    return verdict


def retrain_features_job(usecase: str, home: Path, retrain: bool, training_set: Path) -> int:
    """The training set of a retraining (every accepted batch, Feast); 0 rows when skipped."""
    from mlplatform.jobs.data import features_job

    training_set = Path(training_set)
    if not retrain:
        training_set.parent.mkdir(parents=True, exist_ok=True)
        training_set.write_bytes(b"")  # the artifact exists; downstream stages skip too
        return 0
    return features_job(usecase, Path(home), training_set).training_rows


def retrain_candidate_job(
    usecase: str, family: str, home: Path, training_set: Path, retrain: bool, families: str
) -> str:
    """Train and evaluate one family (its run id), or "" when skipped or not asked for."""
    from mlplatform.jobs.models import evaluate_job, train_candidate

    if not retrain or family not in parse_families(families):
        return ""
    run = train_candidate(usecase, family, Path(training_set), Path(home))
    return evaluate_job(usecase, run.run_id, Path(home)).run_id


def retrain_register_job(
    usecase: str, home: Path, run_ids: list[str], training_set: Path, retrain: bool
) -> Registration | None:
    """Select among the trained candidates and register the winner (battery, champion-challenger
    gate); None when skipped."""
    from mlplatform.jobs.models import register_job, reports_dir, select_job

    if not retrain:
        return None
    runs = [r for r in run_ids if r]
    if not runs:
        raise ValueError("retraining asked for but no candidate was trained (check `families`)")
    chosen = select_job(usecase, runs, Path(home), reports_dir(usecase, Path(home)) / "retrain")
    return register_job(usecase, chosen.run_id, chosen.model_uri, Path(training_set), home)


def canary_request_job(
    usecase: str, home: Path, version: str, gate: str, canary_percent: int = 5
) -> dict:
    """Close the pending triggers with their outcome; when `version` holds the challenger
    alias, request its canary release (a record, an alert, the commands that start it)."""
    from mlplatform.alerts import raise_alert
    from mlplatform.registry import models as reg
    from mlplatform.tracking import use_workspace

    if not version:
        return {"status": SKIPPED}
    if not 1 <= int(canary_percent) <= 100:
        raise ValueError(f"canary_percent {canary_percent}: expected 1..100")
    spec = load_usecase(usecase)
    use_workspace(Path(home), spec.name)
    ws = Workspace.for_usecase(home, spec.name)
    challenger = reg.alias_version(spec, reg.CHALLENGER) == str(version)
    request = None
    if challenger:
        request = {
            "at": now_iso(),
            "usecase": spec.name,
            "version": str(version),
            "percent": int(canary_percent),
            # `deploy` stays in the foreground: the canary starts from a second terminal.
            "local": f"mlplatform deploy --usecase {spec.name}; then, beside it: "
            f"mlplatform canary start --usecase {spec.name} --percent {canary_percent}",
            "cluster": f"mlplatform cluster deploy --usecase {spec.name} --alias challenger "
            f"--canary-percent {canary_percent}",
        }
        path = ws.monitoring / "canary_requests.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps(request) + "\n")
        raise_alert(
            spec.alerts, ws.root, "canary_requested",
            f"retrained v{version} passed the gate: canary it at {canary_percent}% "
            f"({request['cluster']})",
            usecase=spec.name, version=str(version),
        )
    closed = close_retraining(
        spec, Path(home), retrained_version=str(version), registry_gate=gate,
        canary="requested" if challenger else None,
    )
    status = "canary requested" if challenger else "refused by the gate"
    return {"status": status, "version": str(version), "triggers": len(closed), "request": request}
