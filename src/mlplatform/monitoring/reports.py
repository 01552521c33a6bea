"""An Evidently data-drift report (HTML) for one window of served traffic.

Evidently runs its own per-column tests (Wasserstein distance for numeric columns, Jensen-
Shannon or chi-squared for categories, chosen by column size); the HTML is for people, the
platform's trigger reads `mlplatform.monitoring.drift`. About 3 s per report with six columns,
so the replay writes one for windows that triggered and for the last window, not for every one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REFERENCE_ROWS = 5000  # a sample of the training data is enough for the report's tests
# The report is for people; the trigger judges the whole window (mlplatform.monitoring.drift).
# Evidently's cost grows with the rows it plots: a 1M-row window is shown through a sample.
WINDOW_ROWS = 50_000


def drift_snapshot(
    reference: pd.DataFrame, window: pd.DataFrame, columns: list[str], seed: int = 0
):
    """Evidently's data-drift snapshot of `window` (a sample of WINDOW_ROWS above that)
    against a sample of `reference`."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref = reference[columns]
    if len(ref) > REFERENCE_ROWS:
        ref = ref.sample(REFERENCE_ROWS, random_state=seed)
    current = window[columns]
    if len(current) > WINDOW_ROWS:
        current = current.sample(WINDOW_ROWS, random_state=seed)
    return Report([DataDriftPreset()]).run(
        current_data=current.reset_index(drop=True), reference_data=ref
    )


def evidently_report(
    reference: pd.DataFrame, window: pd.DataFrame, columns: list[str], path: Path, seed: int = 0
) -> dict:
    """Write the HTML report to `path`; returns {"drifted_columns": n, "share": s, ...}."""
    snapshot = drift_snapshot(reference, window, columns, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return {"html": str(path), **snapshot_summary(snapshot)}


def snapshot_summary(snapshot) -> dict:
    """Drifted-column count and share, and each column's drift score, of a snapshot."""
    summary: dict = {"columns": {}}
    for metric in snapshot.dict()["metrics"]:
        name, value = metric["metric_name"], metric["value"]
        if name.startswith("DriftedColumnsCount"):
            summary["drifted_columns"] = int(value["count"])
            summary["drifted_share"] = float(value["share"])
        elif name.startswith("ValueDrift(column="):
            col = name[len("ValueDrift(column=") :].split(",", 1)[0]
            summary["columns"][col] = float(value)
    return summary


def add_to_workspace(folder: Path, project: str, snapshot, name: str) -> str:
    """Add `snapshot` to the Evidently workspace at `folder` (the project made on first use), so
    `evidently ui --workspace folder` (`make drift-ui`) shows every window over time; returns
    the project id."""
    from evidently.ui.workspace import Workspace

    ws = Workspace.create(str(folder))
    found = ws.search_project(project)
    proj = found[0] if found else ws.create_project(
        project, description="Served traffic against the champion's training data, per window"
    )
    ws.add_run(proj.id, snapshot, name=name)
    return str(proj.id)
