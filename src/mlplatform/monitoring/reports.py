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


def evidently_report(
    reference: pd.DataFrame, window: pd.DataFrame, columns: list[str], path: Path, seed: int = 0
) -> dict:
    """Write the HTML report to `path`; returns {"drifted_columns": n, "share": s, ...}."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref = reference[columns]
    if len(ref) > REFERENCE_ROWS:
        ref = ref.sample(REFERENCE_ROWS, random_state=seed)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=window[columns].reset_index(drop=True), reference_data=ref
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    summary: dict = {"html": str(path), "columns": {}}
    for metric in snapshot.dict()["metrics"]:
        name, value = metric["metric_name"], metric["value"]
        if name.startswith("DriftedColumnsCount"):
            summary["drifted_columns"] = int(value["count"])
            summary["drifted_share"] = float(value["share"])
        elif name.startswith("ValueDrift(column="):
            col = name[len("ValueDrift(column=") :].split(",", 1)[0]
            summary["columns"][col] = float(value)
    return summary
