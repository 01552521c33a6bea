"""Reading the request log back as frames, and cutting it into monitoring windows."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

import pandas as pd

from mlplatform.monitoring.requestlog import iter_records

META = ["request_id", "row", "ts", "model", "version", "probability", "prediction"]


CHUNK_ROWS = 50_000  # dicts turned into a frame at a time: a 1M-row log never holds 1M dicts


def _frame(records: list[dict]) -> pd.DataFrame:
    meta = pd.DataFrame([{k: r.get(k) for k in META} for r in records])
    features = pd.DataFrame([r.get("features") or {} for r in records])
    return pd.concat([meta, features], axis=1)


def concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames of logged predictions as one (the meta columns alone when there are none)."""
    if not frames:
        return pd.DataFrame(columns=META)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def records_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per logged prediction: the meta columns plus one column per feature."""
    frames, chunk = [], []
    for record in records:
        chunk.append(record)
        if len(chunk) == CHUNK_ROWS:
            frames.append(_frame(chunk))
            chunk = []
    if chunk:
        frames.append(_frame(chunk))
    return concat_frames(frames)


def read_log(
    directory: Path,
    since: float | None = None,
    until: float | None = None,
    request_ids: Collection[str] | None = None,
):
    """The logged predictions with `since <= ts < until` (seconds since the epoch); with
    `request_ids`, only those requests' rows (the ones delayed labels name), kept while the log
    is read instead of after."""
    records = iter_records(directory)
    if request_ids is not None:
        wanted = {str(i) for i in request_ids}
        records = (r for r in records if str(r.get("request_id")) in wanted)
    df = records_frame(records)
    if df.empty:
        return df
    if since is not None:
        df = df[df["ts"] >= since]
    if until is not None:
        df = df[df["ts"] < until]
    return df.reset_index(drop=True)


def by_month(df: pd.DataFrame, ts_col: str = "ts") -> list[tuple[str, pd.DataFrame]]:
    """Calendar-month windows ("2015-03"), oldest first."""
    months = pd.to_datetime(df[ts_col], unit="s", utc=True).dt.strftime("%Y-%m")
    return [(m, part.reset_index(drop=True)) for m, part in df.groupby(months, sort=True)]


def by_period(
    df: pd.DataFrame, freq: str = "Q", ts_col: str = "ts"
) -> list[tuple[str, pd.DataFrame]]:
    """Calendar windows of a pandas period alias ("M": "2015-03", "Q": "2015Q1"), oldest first."""
    # Periods carry no time zone: the UTC wall time decides the window, as in `by_month`.
    when = pd.to_datetime(df[ts_col], unit="s", utc=True).dt.tz_localize(None)
    periods = when.dt.to_period(freq).astype(str)
    return [(p, part.reset_index(drop=True)) for p, part in df.groupby(periods, sort=True)]
