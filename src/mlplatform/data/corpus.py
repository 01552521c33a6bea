"""A bad-data corpus derived from a clean batch and the spec, for any use case.

Each case is a realistic failure of an upstream export (a renamed column, a unit change, a
truncated file...). The columns it damages are chosen from the spec, so the same generator
works on a dataset the platform has never seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.spec import Column, ColumnType, UseCase


@dataclass(frozen=True)
class BadCase:
    """One corpus file and the anomaly the gate must name for it."""

    name: str
    path: Path
    expected_kind: str  # must be reported ...
    expected_feature: str  # ... on this feature ("" for the whole batch)
    allowed_kinds: frozenset[str]  # nothing outside this set may be reported


def _read_clean(clean: Path, spec: UseCase) -> pd.DataFrame:
    text = {c.name: str for c in spec.columns if c.type in (ColumnType.CATEGORY, ColumnType.STRING)}
    df = pd.read_csv(clean, dtype=text, keep_default_na=True)
    for c in spec.columns:  # keep integer columns integer when they hold nulls
        if c.type is ColumnType.INT and c.name in df and df[c.name].dtype.kind == "f":
            df[c.name] = df[c.name].astype("Int64")
    return df


def _pick(spec: UseCase, want: Callable[[Column], bool], avoid: set[str] = frozenset()) -> Column:
    for c in spec.feature_columns:
        if want(c) and c.name not in avoid:
            return c
    raise LookupError("no feature column fits this corpus case")


def generate_corpus(clean: Path, spec: UseCase, out_dir: Path, seed: int = 7) -> list[BadCase]:
    """Write every applicable bad case derived from `clean` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    df = _read_clean(clean, spec)
    n = len(df)
    some = rng.choice(n, size=max(1, n // 50), replace=False)  # 2% of rows
    cases: list[BadCase] = []

    def write(name: str, frame: pd.DataFrame, kind: str, feature: str, allowed=()) -> None:
        path = out_dir / f"{name}.csv"
        frame.to_csv(path, index=False)
        cases.append(BadCase(name, path, kind, feature, frozenset({kind, *allowed})))

    first = spec.feature_columns[0]
    write(
        "renamed_column",
        df.rename(columns={first.name: f"{first.name}_v2"}),
        "SCHEMA_MISSING_COLUMN",
        first.name,
        {"SCHEMA_NEW_COLUMN"},
    )
    dropped = spec.feature_columns[-1]
    write("missing_column", df.drop(columns=[dropped.name]), "SCHEMA_MISSING_COLUMN", dropped.name)

    num = _pick(spec, lambda c: c.is_numeric)
    bad = df.copy()
    bad[num.name] = bad[num.name].astype("object")
    bad.loc[some, num.name] = "unknown"  # "n/a" and "NA" would read as nulls
    write("string_in_numeric", bad, "TYPE", num.name)

    # A unit change: prefer a column with a drift comparator (it is what catches a scale change
    # that stays inside the declared range).
    scaled = (
        _pick(spec, lambda c: c.is_numeric and c.drift_threshold is not None)
        if any(c.drift_threshold for c in spec.feature_columns)
        else _pick(spec, lambda c: c.is_numeric and c.max is not None)
    )
    bad = df.copy()
    bad[scaled.name] = bad[scaled.name] * 10
    write(
        "unit_change_x10",
        bad,
        "DRIFT" if scaled.drift_threshold else "RANGE",
        scaled.name,
        {"RANGE", "DRIFT"},
    )

    nullable = _pick(spec, lambda c: c.max_null_fraction <= 0.5)
    bad = df.copy()
    burst = rng.choice(n, size=int(n * min(1.0, nullable.max_null_fraction + 0.3)), replace=False)
    bad.loc[burst, nullable.name] = None
    write("null_burst", bad, "NULLS", nullable.name)

    cats = [c for c in spec.feature_columns if c.categories]
    if cats:
        bad = df.copy()
        bad.loc[some, cats[0].name] = "__never_seen__"
        write("unseen_category", bad, "CATEGORY", cats[0].name)

    ranged = _pick(spec, lambda c: c.is_numeric and c.min is not None, avoid={scaled.name})
    bad = df.copy()
    low = ranged.min - 1000 if ranged.type is ColumnType.INT else ranged.min - 1000.5
    bad.loc[some, ranged.name] = low
    write("out_of_range", bad, "RANGE", ranged.name)

    (out_dir / "empty_file.csv").write_bytes(b"")
    cases.append(
        BadCase(
            "empty_file", out_dir / "empty_file.csv", "EMPTY_FILE", "", frozenset({"EMPTY_FILE"})
        )
    )
    header_only = out_dir / "header_only.csv"
    header_only.write_text(",".join(df.columns) + "\n")
    cases.append(BadCase("header_only", header_only, "EMPTY_FILE", "", frozenset({"EMPTY_FILE"})))

    cases.append(_truncated(df, out_dir))

    dup = pd.concat([df, df.iloc[some]], ignore_index=True)
    write("duplicated_rows", dup, "DUPLICATES", "")

    ts = spec.event_time.column
    if ts:
        bad = df.copy()
        bad.loc[some, ts] = int(time.time()) + 30 * 86400
        write("future_timestamps", bad, "FUTURE_TIMESTAMP", ts)

    bad = df.copy()
    bad[f"{spec.label}_copy"] = bad[spec.label]  # e.g. an outcome column joined in by mistake
    write("leakage_column", bad, "SCHEMA_NEW_COLUMN", f"{spec.label}_copy")
    return cases


def _truncated(df: pd.DataFrame, out_dir: Path) -> BadCase:
    """The file cut off in the middle of a row, as an interrupted transfer leaves it."""
    full = out_dir / "_full.csv"
    df.to_csv(full, index=False)
    data = full.read_bytes()
    full.unlink()
    mid = data.index(b"\n", len(data) // 2) + 1  # start of a row halfway through
    cut = data.index(b",", mid) + 1  # ... and stop after its first field
    path = out_dir / "truncated.csv"
    path.write_bytes(data[:cut])
    return BadCase("truncated", path, "MALFORMED_FILE", "", frozenset({"MALFORMED_FILE"}))
