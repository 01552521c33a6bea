"""What a training-pipeline run leaves for people: why it stopped, and where everything went.

The CLI's `run` prints these lines; a notebook or another front end can print the same ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlplatform.spec import UseCase
from mlplatform.tracking import registered_model_name
from mlplatform.workspace import Workspace, mlflow_dir


@dataclass(frozen=True)
class StopReason:
    """Why a run stopped: the hint to print, and whether a batch was quarantined (the caller's
    exit status then says "rejected data", not "the platform failed")."""

    hint: str
    quarantined: bool


def why_it_stopped(spec: UseCase, home: Path, started: float) -> StopReason:
    """The newest quarantined batch with its reason, else the selection verdicts of a report
    written after `started` (a run refused by selection), else nothing to add."""
    from mlplatform.data.catalogue import BatchStatus, Catalogue

    ws = Workspace.locate(home, spec.name)
    quarantined = Catalogue(ws.catalogue).list(spec.name, BatchStatus.QUARANTINED)
    if quarantined:
        q = quarantined[-1]
        return StopReason(
            f"\nbatch {q.short_id} is quarantined: {q.status_reason[:400]}\n"
            f"inspect: mlplatform quarantine show {q.short_id} -u {spec.name}",
            True,
        )
    report = ws.reports / "selection.md"
    if report.exists() and report.stat().st_mtime > started:
        verdicts = [ln for ln in report.read_text().splitlines() if ln.startswith("|")]
        return StopReason(f"\nselection report: {report}\n" + "\n".join(verdicts), False)
    return StopReason("", False)


def where_everything_went(spec: UseCase, home: Path, pipeline_root: Path) -> list[str]:
    """One line per place a finished run wrote to, with the command that shows it."""
    ws = Workspace.locate(home, spec.name)
    summary = json.loads((ws.feast / "last_build.json").read_text())
    lines = [
        f"  data catalogue   {ws.catalogue}  (mlplatform batches list -u {spec.name})",
        f"  stored batches   {ws.batches}",
        f"  quarantine       {ws.quarantine}  (mlplatform quarantine list)",
        f"  feast registry   {summary['registry']}",
        f"  online store     {summary['online_store']}",
        f"  training set     {summary.get('training_set')} "
        f"({summary.get('training_rows')} rows, label rate {summary.get('label_rate')})",
        f"  pipeline runs    {pipeline_root}",
    ]
    reg = ws.reports / "registration.json"
    if reg.exists():
        r = json.loads(reg.read_text())
        lines += [
            f"  mlflow           {mlflow_dir(home) / 'mlflow.db'}  (make mlflow-ui)",
            f"  selection report {ws.reports / 'selection.md'} (+ pareto.png)",
            f"  registered       {registered_model_name(spec.name)} v{r['version']} "
            f"({r['family']}), alias: {r['alias'] or 'none'}; gate: {r['gate']}",
        ]
        battery = r["battery"].items()
        lines += [f"    battery {name:<12} {verdict[:150]}" for name, verdict in battery]
    return lines
