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


def read_clean(clean: Path, spec: UseCase) -> pd.DataFrame:
    """A clean CSV as the gate's reader types it (text columns as text, ints as ints)."""
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


@dataclass(frozen=True)
class Corruption:
    """One damaged frame and the anomaly the gate must name for it."""

    name: str
    frame: pd.DataFrame
    expected_kind: str
    expected_feature: str
    allowed_kinds: frozenset[str]


def _judged(spec: UseCase) -> set[str]:
    return set(spec.gate_thresholds())


def corruptions(
    df: pd.DataFrame,
    spec: UseCase,
    rng: np.random.Generator,
    accepted: pd.DataFrame | None = None,
) -> list[Corruption]:
    """Every applicable corruption of a clean frame (`accepted`: rows already in the
    catalogue, for the re-sent case). File-level damage (empty, truncated) is in
    `generate_corpus`."""
    n = len(df)
    some = rng.choice(n, size=max(1, n // 50), replace=False)  # 2% of rows
    judged = _judged(spec)
    out: list[Corruption] = []

    def add(name: str, frame: pd.DataFrame, kind: str, feature: str, allowed=()) -> None:
        out.append(Corruption(name, frame, kind, feature, frozenset({kind, *allowed})))

    first = spec.feature_columns[0]
    add(
        "renamed_column",
        df.rename(columns={first.name: f"{first.name}_v2"}),
        "SCHEMA_MISSING_COLUMN",
        first.name,
        {"SCHEMA_NEW_COLUMN"},
    )
    dropped = spec.feature_columns[-1]
    add("missing_column", df.drop(columns=[dropped.name]), "SCHEMA_MISSING_COLUMN", dropped.name)

    num = _pick(spec, lambda c: c.is_numeric)
    bad = df.copy()
    bad[num.name] = bad[num.name].astype("object")
    bad.loc[bad.index[some], num.name] = "unknown"  # "n/a" and "NA" would read as nulls
    add("string_in_numeric", bad, "TYPE", num.name)

    # A unit change: the gate judges every numeric feature's deciles, so x10 is drift whether
    # or not the values leave the declared range.
    scaled = _pick(spec, lambda c: c.is_numeric and c.name in judged)
    bad = df.copy()
    bad[scaled.name] = bad[scaled.name] * 10
    add("unit_change_x10", bad, "DRIFT", scaled.name, {"RANGE"})

    # Seconds sent as minutes: divided by 60, every value still inside the declared range.
    inside = [
        c
        for c in spec.feature_columns
        if c.is_numeric
        and c.name in judged
        and c.name != scaled.name
        and (c.min is None or c.min <= 0)
    ]
    if inside:
        col = max(inside, key=lambda c: (c.max or 0) - (c.min or 0))
        bad = df.copy()
        divided = bad[col.name] / 60
        bad[col.name] = divided.round().astype("Int64") if col.type is ColumnType.INT else divided
        add("in_range_unit_change", bad, "DRIFT", col.name)

    nullable = _pick(spec, lambda c: c.max_null_fraction <= 0.5)
    bad = df.copy()
    burst = rng.choice(n, size=int(n * min(1.0, nullable.max_null_fraction + 0.3)), replace=False)
    bad.loc[bad.index[burst], nullable.name] = None
    add("null_burst", bad, "NULLS", nullable.name, {"DRIFT"})  # nulls move the shares too

    cats = [c for c in spec.feature_columns if c.categories]
    if cats:
        bad = df.copy()
        bad.loc[bad.index[some], cats[0].name] = "__never_seen__"
        add("unseen_category", bad, "CATEGORY", cats[0].name)
    shifted = [c for c in cats if c.name in judged]
    if shifted:
        col = shifted[0]
        counts = df[col.name].value_counts()
        one = counts.index[1] if len(counts) > 1 else col.categories[0]
        bad = df.copy()
        bad[col.name] = one  # an export filtered to one category, every value still allowed
        add("category_share_shift", bad, "DRIFT", col.name)

    ranged = _pick(spec, lambda c: c.is_numeric and c.min is not None, avoid={scaled.name})
    bad = df.copy()
    low = ranged.min - 1000 if ranged.type is ColumnType.INT else ranged.min - 1000.5
    bad.loc[bad.index[some], ranged.name] = low
    add("out_of_range", bad, "RANGE", ranged.name)

    label = df[spec.label]
    if spec.label in judged and set(label.dropna().unique()) <= {0, 1}:
        # An inverted label: every value valid, the positive rate 0.22 becomes 0.78.
        add("label_rate_shift", df.assign(**{spec.label: 1 - label}), "LABEL_SHIFT", spec.label)

    dup = pd.concat([df, df.iloc[some]], ignore_index=True)
    add("duplicated_rows", dup, "DUPLICATES", "")

    ts = spec.event_time.column
    if ts:
        bad = df.copy()
        bad.loc[bad.index[some], ts] = int(time.time()) + 30 * 86400
        add("future_timestamps", bad, "FUTURE_TIMESTAMP", ts)

    bad = df.copy()
    bad[f"{spec.label}_copy"] = bad[spec.label]  # e.g. an outcome column joined in by mistake
    add("leakage_column", bad, "SCHEMA_NEW_COLUMN", f"{spec.label}_copy")

    if accepted is not None and len(accepted):
        # Re-sent and re-ordered: new bytes (never the accepted file itself), known rows.
        take = rng.choice(len(accepted), size=max(1, min(n, len(accepted) // 2)), replace=False)
        add("resent_content", accepted.iloc[take], "OVERLAP", "")
    return out


def generate_corpus(
    clean: Path,
    spec: UseCase,
    out_dir: Path,
    seed: int = 7,
    accepted: Path | None = None,
) -> list[BadCase]:
    """Write every applicable bad case derived from `clean` into `out_dir` (`accepted`: a
    file already in the catalogue, for the re-sent case)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    df = read_clean(clean, spec)
    seen = read_clean(accepted, spec) if accepted is not None else None
    cases: list[BadCase] = []
    for c in corruptions(df, spec, rng, seen):
        path = out_dir / f"{c.name}.csv"
        c.frame.to_csv(path, index=False)
        cases.append(BadCase(c.name, path, c.expected_kind, c.expected_feature, c.allowed_kinds))

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
    return cases


def split_clean(
    clean: Path, spec: UseCase, out_dir: Path, shares: tuple[float, ...], seed: int = 11
) -> list[Path]:
    """The clean file cut into random disjoint parts of the given shares, written as CSVs:
    ordinary batches from one source, for judging batches after the first."""
    df = read_clean(clean, spec)
    order = np.random.default_rng(seed).permutation(len(df))
    bounds = np.cumsum([0, *[round(s * len(df)) for s in shares]])
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        path = out_dir / f"part{i}.csv"
        df.iloc[np.sort(order[a:b])].to_csv(path, index=False)
        paths.append(path)
    return paths


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
