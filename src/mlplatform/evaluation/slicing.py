"""Slice columns derived from the use-case spec (pure pandas, no TFMA).

Every slice an evaluation reports is a string column: TFMA slices by feature value, and it
silently drops rows whose slice value is missing, so missing values become the explicit group
"missing" here and the per-slice counts always add up to the overall count.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mlplatform.features.tables import EVENT_TS
from mlplatform.spec import Band, EdgeCase, UseCase

MISSING = "missing"
RECENT_COLUMN = "recent_period"
RECENT, EARLIER = "recent", "earlier"
YES, NO = "yes", "no"


class SliceError(ValueError):
    """A declared slice that cannot be evaluated (matches no rows, or lacks its column)."""


def edge_column(edge: EdgeCase) -> str:
    """The slice column of an edge case: `edge_<name>`."""
    return f"edge_{edge.name}"


def slice_columns(spec: UseCase, has_recent: bool) -> list[str]:
    """The columns to slice by, in report order: segments, bands, protected, recent, edges."""
    cols: list[str] = [*spec.slices.segments, *(b.name for b in spec.slices.bands)]
    cols += spec.slices.protected  # raw columns or band names; duplicates removed below
    if has_recent:
        cols.append(RECENT_COLUMN)
    cols += [edge_column(e) for e in spec.slices.edge_cases]
    return list(dict.fromkeys(cols))


def _fmt_edge(edge: float) -> str:
    # Edges are written as integers in the specs (50000, 25): keep them that way in labels.
    return str(int(edge)) if float(edge).is_integer() else f"{edge:g}"


def band_labels(band: Band) -> list[str]:
    """Labels of a band's intervals, lowest first: `<e0`, `e0-e1`, ..., `>=e_last`."""
    e = [_fmt_edge(x) for x in band.edges]
    return [f"<{e[0]}", *(f"{lo}-{hi}" for lo, hi in zip(e, e[1:], strict=False)), f">={e[-1]}"]


def band_column(values: pd.Series, band: Band) -> pd.Series:
    """Cut `values` into the band's labelled intervals, closed on the left: [lo, hi)."""
    numeric = pd.to_numeric(values, errors="coerce").astype("float64")
    bins = [-math.inf, *band.edges, math.inf]
    cut = pd.cut(numeric, bins=bins, right=False, labels=band_labels(band))
    return cut.astype(object).where(cut.notna(), MISSING).astype(str)


def as_labels(values: pd.Series) -> pd.Series:
    """A column as string group labels; missing values become "missing".

    A float column holding only whole numbers (an int column with gaps, as a CSV reads it)
    is labelled `8`, not `8.0`, so the groups read like the raw data.
    """
    missing = values.isna()
    present = values[~missing]
    if pd.api.types.is_float_dtype(values.dtype) and (present % 1 == 0).all():
        values = values.astype("Int64")
    return values.astype(object).where(~missing, MISSING).astype(str)


def edge_mask(df: pd.DataFrame, edge: EdgeCase) -> pd.Series:
    """Rows matching an edge case's `where`, as a plain bool Series (missing -> False)."""
    try:
        # The python engine: numexpr is not installed and it mishandles nullable dtypes.
        result = df.eval(edge.where, engine="python")
    except Exception as exc:  # pandas raises many types (SyntaxError, KeyError, TypeError...)
        raise SliceError(
            f"edge case {edge.name!r}: cannot evaluate `{edge.where}`: {type(exc).__name__}: {exc}"
        ) from exc
    if not _is_boolean(result):
        # e.g. `fare + 1` (numbers) or `x = fare` (a frame): truthiness would be meaningless.
        raise SliceError(
            f"edge case {edge.name!r}: `{edge.where}` must give one true/false per row, "
            f"got {getattr(result, 'dtype', type(result).__name__)}"
        )
    # Nullable comparisons give <NA> where a value is missing: not a match.
    return result.fillna(False).astype(bool).set_axis(df.index)


def _is_boolean(result: object) -> bool:
    if not isinstance(result, pd.Series):
        return False
    if pd.api.types.is_bool_dtype(result.dtype):
        return True
    # A bare flag column of Python bools with gaps (`where: is_vip`) has object dtype.
    return result.dtype == object and all(
        v is pd.NA or v is None or isinstance(v, bool | np.bool_) for v in result
    )


def add_slice_columns(
    df: pd.DataFrame, spec: UseCase, recent_start: pd.Timestamp | None
) -> pd.DataFrame:
    """A copy of `df` with one string column per slice of `slice_columns(spec, ...)`.

    Bands and edge cases are computed from the raw values first; segments and protected raw
    columns are then replaced by their string labels (an edge case may compare them as
    numbers, e.g. `pickup_community_area == 8`).
    """
    out = df.copy()
    derived: dict[str, pd.Series] = {}
    for band in spec.slices.bands:
        _need(out, band.column, f"band {band.name!r}")
        derived[band.name] = band_column(out[band.column], band)
    if recent_start is not None:
        _need(out, EVENT_TS, "the recent period")
        recent = out[EVENT_TS] >= recent_start
        derived[RECENT_COLUMN] = pd.Series(np.where(recent, RECENT, EARLIER), index=out.index)
    for edge in spec.slices.edge_cases:
        derived[edge_column(edge)] = pd.Series(
            np.where(edge_mask(out, edge), YES, NO), index=out.index
        )
    band_names = {b.name for b in spec.slices.bands}
    for col in dict.fromkeys([*spec.slices.segments, *spec.slices.protected]):
        if col in band_names:
            continue
        _need(out, col, f"slice {col!r}")
        out[col] = as_labels(out[col])
    for name, values in derived.items():
        out[name] = values
    return out


def check_slices(df: pd.DataFrame, spec: UseCase, recent_start: pd.Timestamp | None) -> None:
    """Raise SliceError naming the first declared slice that matches no rows of `df`.

    Run before training, so a typo in an edge case (`trip_miles == -1`) or a band over an
    all-missing column fails fast instead of yielding an evaluation with a silent gap.
    Segments are not checked: their groups are whatever values the data holds.
    """
    for band in spec.slices.bands:
        _need(df, band.column, f"band {band.name!r}", SliceError)
        if pd.to_numeric(df[band.column], errors="coerce").notna().sum() == 0:
            raise SliceError(
                f"band {band.name!r} matches no rows: column {band.column!r} has no numeric "
                f"values in the {len(df)} evaluation rows"
            )
    if recent_start is not None:
        _need(df, EVENT_TS, "the recent period", SliceError)
        if not (df[EVENT_TS] >= recent_start).any():
            raise SliceError(
                f"recent period matches no rows: no {EVENT_TS} at or after {recent_start}"
            )
    for edge in spec.slices.edge_cases:
        if not edge_mask(df, edge).any():
            raise SliceError(
                f"edge case {edge.name!r} matches no rows: `{edge.where}` is false for all "
                f"{len(df)} evaluation rows; fix the expression in usecases/{spec.name}.yaml "
                "or remove the edge case"
            )


def _need(df: pd.DataFrame, col: str, what: str, error: type[ValueError] = ValueError) -> None:
    if col not in df.columns:
        raise error(f"{what} needs column {col!r}, which the evaluation data does not have")
