"""Offline feature tables built from accepted batches only.

Row-level features keep the raw values of the spec's feature columns, keyed by the entity and
stamped with the event time. Aggregates are trailing-window statistics per group (e.g. per
pickup area), stamped at the end of each day they cover, so a point-in-time join only ever
sees days that ended before the row's own event time: no leakage from the future.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from mlplatform.data.catalogue import BatchRecord
from mlplatform.data.labels import encode_labels
from mlplatform.data.reading import read_batch
from mlplatform.spec import Aggregate, UseCase

EVENT_TS = "event_timestamp"


def partial_path(path: Path) -> Path:
    """Where a table is written before it replaces `path` (hidden beside it, same folder)."""
    return path.with_name(f".{path.name}.partial")


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write `table` to the Parquet file `path` whole or not at all: a build killed part-way
    leaves the previous file for Feast to read, and the next build replaces it."""
    partial = partial_path(path)
    table.to_parquet(partial, index=False)
    os.replace(partial, path)


def entity_key_of(spec: UseCase) -> str:
    return spec.entity.key


def batch_frame(rec: BatchRecord, spec: UseCase) -> pd.DataFrame:
    """One accepted batch as rows with entity key and event time (UTC)."""
    table = read_batch(Path(rec.stored_path), spec, rec.format).table
    df = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)  # ints stay ints
    if spec.label in df:
        df[spec.label] = encode_labels(spec.label_spec, df[spec.label])  # 0/1 from here on
    if spec.entity.derive == "row_number":
        # Stable across rebuilds: the batch's content hash and the row's position in it.
        df[spec.entity.key] = [f"{rec.batch_id[:12]}-{i}" for i in range(len(df))]
    if spec.event_time.column:
        df[EVENT_TS] = pd.to_datetime(df[spec.event_time.column], unit="s", utc=True)
    else:
        # No event time in the data: the batch's ingestion time stands in (see the spec).
        df[EVENT_TS] = pd.Timestamp(datetime.fromisoformat(rec.ingested_at)).tz_convert(UTC)
    df["batch_id"] = rec.batch_id
    return df


def rows_table(frames: list[pd.DataFrame], spec: UseCase) -> pd.DataFrame:
    cols = [spec.entity.key, EVENT_TS, *[c.name for c in spec.feature_columns]]
    df = pd.concat(frames, ignore_index=True)[cols]
    return df.drop_duplicates(subset=[spec.entity.key], keep="last")


def aggregate_column_names(agg: Aggregate) -> list[str]:
    # Single underscores: Feast reserves "__" to join view and feature names.
    return [f"{agg.name}_trips", *[f"{agg.name}_mean_{m}" for m in agg.mean_of]]


def aggregate_table(rows: pd.DataFrame, agg: Aggregate) -> pd.DataFrame:
    """Trailing `window_days` count and means per group, one row per group and day end."""
    df = rows.dropna(subset=[agg.group_by]).copy()
    names = aggregate_column_names(agg)
    if df.empty:
        return pd.DataFrame(columns=[agg.group_by, EVENT_TS, *names])
    df["day"] = df[EVENT_TS].dt.floor("D")
    daily = df.groupby([agg.group_by, "day"]).agg(
        n=(agg.group_by, "size"),
        **{f"s_{m}": (m, "sum") for m in agg.mean_of},
        **{f"c_{m}": (m, "count") for m in agg.mean_of},
    )
    out = []
    for key, g in daily.groupby(level=0):
        g = g.droplevel(0)
        # Dense daily rows from the day before the group's first trip: Feast's file store
        # drops an entity row whose group has feature rows but none inside the TTL, so every
        # moment a row can have must be covered (an empty window reads as 0 trips, no means).
        full = pd.date_range(
            g.index.min() - pd.Timedelta(days=1),
            g.index.max() + pd.Timedelta(days=agg.window_days),
            freq="D",
        )
        roll = g.reindex(full, fill_value=0).rolling(f"{agg.window_days}D").sum()
        part = pd.DataFrame(
            {
                agg.group_by: key,
                EVENT_TS: roll.index + pd.Timedelta(days=1),  # available once the day has ended
                names[0]: roll["n"].astype("int64"),
            }
        )
        for m, name in zip(agg.mean_of, names[1:], strict=True):
            part[name] = (roll[f"s_{m}"] / roll[f"c_{m}"].where(roll[f"c_{m}"] > 0)).to_numpy()
        out.append(part)
    result = pd.concat(out, ignore_index=True)
    if pd.api.types.is_integer_dtype(rows[agg.group_by].dtype):
        result[agg.group_by] = result[agg.group_by].astype("int64")
    return result
