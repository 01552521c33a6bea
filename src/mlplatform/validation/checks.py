"""Checks that TFDV's schema cannot express: duplicate rows, event times in the future, size."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc

from mlplatform.spec import UseCase
from mlplatform.validation.report import Anomaly


def duplicate_fraction(table: pa.Table) -> float:
    if table.num_rows == 0:
        return 0.0
    keys = table.group_by(table.column_names).aggregate([])
    return 1.0 - keys.num_rows / table.num_rows


def batch_checks(table: pa.Table, spec: UseCase, now: float | None = None) -> list[Anomaly]:
    found: list[Anomaly] = []
    limit = spec.validation.max_duplicate_fraction
    dup = duplicate_fraction(table)
    if dup > limit:
        found.append(
            Anomaly(
                "DUPLICATES",
                "",
                f"{dup:.2%} of rows are exact repeats of another row (allowed: {limit:.2%})",
            )
        )
    if table.num_rows < spec.validation.min_rows:
        found.append(
            Anomaly(
                "TOO_FEW_ROWS",
                "",
                f"{table.num_rows} rows, fewer than validation.min_rows={spec.validation.min_rows}",
            )
        )
    ts_col = spec.event_time.column
    if ts_col and ts_col in table.column_names and pa.types.is_integer(table[ts_col].type):
        now = time.time() if now is None else now
        cutoff = int(now) + spec.event_time.future_tolerance_s
        n_future = pc.sum(pc.greater(table[ts_col], cutoff)).as_py() or 0
        if n_future:
            latest = pc.max(table[ts_col]).as_py()
            found.append(
                Anomaly(
                    "FUTURE_TIMESTAMP",
                    ts_col,
                    f"{n_future} rows have event times after now (latest {latest}, "
                    f"now {int(now)}, tolerance {spec.event_time.future_tolerance_s}s)",
                )
            )
    return found
