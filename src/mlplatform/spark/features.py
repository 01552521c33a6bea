"""The feature build's aggregate tables computed on Spark, for sources too large for pandas.

`features.tables.aggregate_table` reduces every accepted row to one row per group and day,
then rolls a trailing window over dense daily rows. Here the same steps run as Spark SQL: the
per-day reduction (the part that grows with the source) and the dense, rolled rows are all
computed on the executors; only the finished table comes back, and it is written to the same
offline-store file as the pandas build, so Feast reads it unchanged.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from mlplatform.data.catalogue import BatchRecord, Catalogue
from mlplatform.features.definitions import table_path
from mlplatform.features.tables import EVENT_TS, aggregate_column_names
from mlplatform.spec import Aggregate, ColumnType, UseCase
from mlplatform.workspace import Workspace

DAY_SECONDS = 86_400
_SPARK_TYPE = {
    ColumnType.INT: "long",
    ColumnType.FLOAT: "double",
    ColumnType.CATEGORY: "string",
    ColumnType.STRING: "string",
}


def batch_rows(spark, rec: BatchRecord, spec: UseCase):
    """One stored batch as a Spark frame: the spec's columns with their declared types and
    `event_timestamp` (the spec's unix-seconds column, else the batch's ingestion time)."""
    from pyspark.sql import functions as F

    path = str(Path(rec.stored_path).resolve())
    if rec.format == "parquet":
        raw = spark.read.parquet(path)
    else:
        # Text first, cast per the spec: the types the gate validated, not Spark's guesses.
        raw = spark.read.option("header", True).option("inferSchema", False).csv(path)
    cols = [
        F.col(c.name).cast(_SPARK_TYPE[c.type]).alias(c.name)
        for c in spec.columns
        if c.name in raw.columns
    ]
    df = raw.select(*cols)
    if spec.event_time.column:
        ts = F.timestamp_seconds(F.col(spec.event_time.column).cast("long"))
    else:
        at = datetime.fromisoformat(rec.ingested_at).timestamp()
        ts = F.timestamp_seconds(F.lit(at))
    return df.withColumn(EVENT_TS, ts)


def usable_rows(spark, spec: UseCase, ws: Workspace):
    """Every usable batch's rows, oldest first, a row re-sent in a later batch counted once
    (as the pandas build does with the stored row fingerprints)."""
    from pyspark.sql import functions as F

    usable = Catalogue(ws.catalogue).usable(spec.name)
    if not usable:
        raise RuntimeError(
            f"{spec.name}: no accepted batches; ingest data first "
            f"(`mlplatform ingest FILE -u {spec.name}`)"
        )
    content = [c.name for c in spec.columns]
    total, seen = None, None
    for rec in usable:
        df = batch_rows(spark, rec, spec)
        df = df.withColumn("__h", F.xxhash64(*[F.col(c) for c in content if c in df.columns]))
        if seen is not None:
            df = df.join(seen, "__h", "left_anti")
        hashes = df.select("__h").distinct()
        seen = hashes if seen is None else seen.union(hashes).distinct()
        total = df if total is None else total.unionByName(df, allowMissingColumns=True)
    return total.drop("__h")


def aggregate_frame(rows, agg: Aggregate):
    """The Spark frame of `features.tables.aggregate_table`: trailing `window_days` count and
    means per group, one row per group and day end, dense from the day before the group's
    first row to `window_days` after its last (docs/decisions/0005)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    g = agg.group_by
    names = aggregate_column_names(agg)
    # Whole days since the epoch, in UTC: the pandas build floors tz-aware UTC times.
    day = F.floor(F.col(EVENT_TS).cast("long") / DAY_SECONDS)
    daily = (
        rows.where(F.col(g).isNotNull())
        .withColumn("__day", day)
        .groupBy(g, "__day")
        .agg(
            F.count(F.lit(1)).alias("__n"),
            *[F.sum(m).alias(f"__s_{m}") for m in agg.mean_of],
            *[F.count(m).alias(f"__c_{m}") for m in agg.mean_of],
        )
    )
    bounds = daily.groupBy(g).agg(
        (F.min("__day") - 1).alias("__lo"), (F.max("__day") + agg.window_days).alias("__hi")
    )
    dense = bounds.select(g, F.explode(F.sequence("__lo", "__hi")).alias("__day"))
    filled = dense.join(daily, [g, "__day"], "left").fillna(0)
    # The window covers the day itself and the window_days - 1 days before it, like
    # pandas' rolling("<window_days>D") over a daily index.
    win = Window.partitionBy(g).orderBy("__day").rangeBetween(-(agg.window_days - 1), 0)
    out = filled.select(
        F.col(g),
        # Available once the day has ended: stamped at the next midnight.
        F.timestamp_seconds((F.col("__day") + 1) * DAY_SECONDS).alias(EVENT_TS),
        F.sum("__n").over(win).cast("long").alias(names[0]),
        *[
            (
                F.sum(f"__s_{m}").over(win)
                / F.when(F.sum(f"__c_{m}").over(win) > 0, F.sum(f"__c_{m}").over(win))
            ).cast("double").alias(name)
            for m, name in zip(agg.mean_of, names[1:], strict=True)
        ],
    )
    return out


def aggregate_table(rows, agg: Aggregate) -> pd.DataFrame:
    """`aggregate_frame` collected as the pandas build's table (same columns, dtypes, order)."""
    from pyspark.sql import functions as F

    names = aggregate_column_names(agg)
    frame = aggregate_frame(rows, agg).orderBy(agg.group_by, EVENT_TS)
    # Epoch seconds across the wire: no session or Python time zone can shift them.
    df = frame.withColumn(EVENT_TS, F.col(EVENT_TS).cast("long")).toPandas()
    if df.empty:
        return pd.DataFrame(columns=[agg.group_by, EVENT_TS, *names])
    df[EVENT_TS] = pd.to_datetime(df[EVENT_TS], unit="s", utc=True)
    df[names[0]] = df[names[0]].astype("int64")
    for name in names[1:]:
        df[name] = df[name].astype("float64")
    group_type = dict(rows.dtypes)[agg.group_by]
    if group_type in ("bigint", "int", "smallint", "tinyint"):
        df[agg.group_by] = df[agg.group_by].astype("int64")
    return df.sort_values([agg.group_by, EVENT_TS], kind="stable").reset_index(drop=True)


def build_aggregate_tables(spark, spec: UseCase, ws: Workspace) -> dict[str, int]:
    """Write every aggregate of the spec to its offline-store file (the pandas build's path),
    computed on `spark` from the usable batches; returns rows written per view."""
    rows = usable_rows(spark, spec, ws)
    data_dir = ws.feast / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for agg in spec.features.aggregates:
        table = aggregate_table(rows, agg)
        view = f"{spec.name}_{agg.name}"
        table.to_parquet(table_path(data_dir, view), index=False)
        written[view] = len(table)
    return written
