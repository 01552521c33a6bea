"""The feature build's offline tables computed on Spark, for sources too large for pandas.

`FeatureRepo.build_tables` writes two kinds of table from the usable batches, and both are
built here into the same offline-store files, so Feast reads them unchanged
(`mlplatform features build --engine spark --master URL`):

- the rows view (`features.tables.rows_table`): entity key, event time and the feature
  columns of every row, a key repeated later kept once (its last row). It is as large as the
  source, so it never passes through the driver's memory whole: Spark writes it as part files
  in row order, and the driver copies them row group by row group into the one Parquet file,
  with the column types (and pandas metadata) of the pandas build's file.
- the aggregates (`features.tables.aggregate_table`): every row reduced to one row per group
  and day, then a trailing window rolled over dense daily rows. The per-day reduction (the part
  that grows with the source) and the dense, rolled rows are computed on the executors; only
  the finished, small table comes back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlplatform.data.catalogue import BatchRecord, Catalogue
from mlplatform.features.definitions import rows_view_name, table_path
from mlplatform.features.store import BuildResult, NoAcceptedData
from mlplatform.features.tables import (
    EVENT_TS,
    aggregate_column_names,
    partial_path,
    write_table,
)
from mlplatform.spark.columns import col
from mlplatform.spec import Aggregate, ColumnType, UseCase
from mlplatform.workspace import Workspace

DAY_SECONDS = 86_400
# The executors' part files of a table, in the offline store's folder until copied into it.
PARTS_PREFIX = ".spark-parts-"
# Helper columns of `ordered_rows`: the batch's place among the usable ones (oldest first) and
# a row id that grows with the row's place in its file (monotonically_increasing_id).
BATCH_ORD = "__batch"
ROW_ID = "__row"
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
        col(c.name).cast(_SPARK_TYPE[c.type]).alias(c.name)
        for c in spec.columns
        if c.name in raw.columns
    ]
    df = raw.select(*cols)
    if spec.event_time.column:
        ts = F.timestamp_seconds(col(spec.event_time.column).cast("long"))
    else:
        # Exact microseconds (a float of seconds since 1970 cannot hold them all).
        at = datetime.fromisoformat(rec.ingested_at)
        ts = F.timestamp_micros(F.lit(_epoch_micros(at)))
    return df.withColumn(EVENT_TS, ts)


def _epoch_micros(at: datetime) -> int:
    delta = at - datetime(1970, 1, 1, tzinfo=at.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _with_positions(df, rec: BatchRecord, key: str):
    """`df` with the pandas build's derived key: the batch id's first 12 characters and the
    row's 0-based place in the file (`features.tables.batch_frame`).

    A file is read in splits, one partition each, in file order, and monotonically_increasing_id
    counts rows inside a partition (its upper bits hold the partition's number); a small job
    counts each partition's rows, so a row's place is the rows of the partitions before its
    own plus its count inside it. Nothing is collected but one count per partition.
    """
    from pyspark.sql import functions as F

    df = df.withColumn("__part", F.spark_partition_id())
    counts = dict(df.groupBy("__part").count().collect())
    offsets, before = {}, 0
    for part in range(max(counts, default=-1) + 1):
        offsets[part] = before
        before += counts.get(part, 0)
    if before != rec.rows:
        raise RuntimeError(
            f"batch {rec.short_id}: Spark read {before} rows of {rec.stored_path}, the "
            f"catalogue holds {rec.rows}; the derived keys would not match the pandas build's"
        )
    pairs = [x for part, start in offsets.items() for x in (F.lit(part), F.lit(start).cast("long"))]
    offset = F.element_at(F.create_map(*pairs), F.col("__part"))
    inside = F.col(ROW_ID) - F.shiftleft(F.col("__part").cast("long"), 33)
    position = (offset + inside).cast("long")
    return df.withColumn(key, F.concat(F.lit(f"{rec.batch_id[:12]}-"), position.cast("string")))


def ordered_rows(spark, spec: UseCase, ws: Workspace, usable: list[BatchRecord] | None = None):
    """Every usable batch's rows (the spec's columns, `event_timestamp`, a derived entity key),
    a row re-sent in a later batch counted once, as the pandas build counts it (the stored row
    fingerprints); with `BATCH_ORD` and `ROW_ID`, which order them as the pandas build does:
    batches oldest first, each in file order."""
    from pyspark.sql import functions as F

    if usable is None:
        usable = Catalogue(ws.catalogue).usable(spec.name)
    if not usable:
        raise _nothing_to_build(spec)
    content = [c.name for c in spec.columns]
    total, seen = None, None
    for i, rec in enumerate(usable):
        df = batch_rows(spark, rec, spec).withColumn(ROW_ID, F.monotonically_increasing_id())
        if spec.entity.derive == "row_number":
            df = _with_positions(df, rec, spec.entity.key)  # every row of the file counts
        df = df.withColumn(BATCH_ORD, F.lit(i))
        df = df.withColumn("__h", F.xxhash64(*[col(c) for c in content if c in df.columns]))
        if seen is not None:
            df = df.join(seen, "__h", "left_anti")
        hashes = df.select("__h").distinct()
        seen = hashes if seen is None else seen.union(hashes).distinct()
        total = df if total is None else total.unionByName(df, allowMissingColumns=True)
    return total.drop("__h", "__part")


def _nothing_to_build(spec: UseCase) -> NoAcceptedData:
    return NoAcceptedData(  # the pandas build's words
        f"{spec.name}: no accepted batches; ingest data first "
        f"(`mlplatform ingest FILE -u {spec.name}`) and fix quarantined ones"
    )


def usable_rows(spark, spec: UseCase, ws: Workspace):
    """Every usable batch's rows, oldest first, a row re-sent in a later batch counted once
    (as the pandas build does with the stored row fingerprints)."""
    return ordered_rows(spark, spec, ws).drop(BATCH_ORD, ROW_ID)


def rows_frame(rows, spec: UseCase):
    """The Spark frame of `features.tables.rows_table` from `ordered_rows`: entity key, event
    time and the feature columns, a key seen again later kept once (its last row), in the
    pandas build's row order."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = spec.entity.key
    cols = [key, EVENT_TS, *[c.name for c in spec.feature_columns]]
    if spec.entity.derive != "row_number":  # derived keys are unique by construction
        last = Window.partitionBy(col(key)).orderBy(F.desc(BATCH_ORD), F.desc(ROW_ID))
        rows = rows.withColumn("__last", F.row_number().over(last)).where(F.col("__last") == 1)
    return rows.orderBy(BATCH_ORD, ROW_ID).select(*[col(c) for c in cols])


def _pandas_schema(spec: UseCase) -> pa.Schema:
    """The Arrow schema (with pandas' metadata) of the pandas build's rows table, so a reader
    gets the same dtypes from either file (Int64 for an integer column with nulls)."""
    dtype = {
        ColumnType.INT: "Int64",
        ColumnType.FLOAT: "float64",
        ColumnType.CATEGORY: "object",
        ColumnType.STRING: "object",
    }
    by_name = {c.name: c for c in spec.columns}
    key = spec.entity.key
    frame = {}
    if spec.entity.derive == "row_number":
        frame[key] = pd.Series(["x"], dtype="object")
    else:
        frame[key] = pd.Series([0 if by_name[key].type is ColumnType.INT else "x"],
                               dtype=dtype[by_name[key].type])
    frame[EVENT_TS] = pd.Series([pd.Timestamp(0, tz="UTC")])
    for c in spec.feature_columns:
        sample = "x" if dtype[c.type] == "object" else 0
        frame[c.name] = pd.Series([sample], dtype=dtype[c.type])
    return pa.Schema.from_pandas(pd.DataFrame(frame), preserve_index=False)


def write_single_parquet(frame, path: Path, schema: pa.Schema, tmp_dir: Path) -> int:
    """Write the Spark `frame` to the one Parquet file `path` in its row order: part files from
    the executors, copied one row group at a time (bounded driver memory), cast to `schema`.
    Replaces `path` only when complete. Returns the rows written."""
    parts_dir = Path(tempfile.mkdtemp(prefix=PARTS_PREFIX, dir=tmp_dir))
    try:
        frame.write.mode("overwrite").parquet(str(parts_dir / "out"))
        parts = sorted((parts_dir / "out").glob("part-*.parquet"))
        partial = partial_path(path)
        rows = 0
        with pq.ParquetWriter(partial, schema) as writer:
            for part in parts:
                f = pq.ParquetFile(part)
                for g in range(f.num_row_groups):
                    t = f.read_row_group(g)
                    writer.write_table(t.select(schema.names).cast(schema))
                    rows += t.num_rows
        os.replace(partial, path)
        return rows
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


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
        rows.where(col(g).isNotNull())
        .withColumn("__day", day)
        .groupBy(col(g), "__day")
        .agg(
            F.count(F.lit(1)).alias("__n"),
            *[F.sum(col(m)).alias(f"__s_{m}") for m in agg.mean_of],
            *[F.count(col(m)).alias(f"__c_{m}") for m in agg.mean_of],
        )
    )
    bounds = daily.groupBy(col(g)).agg(
        (F.min("__day") - 1).alias("__lo"), (F.max("__day") + agg.window_days).alias("__hi")
    )
    dense = bounds.select(col(g), F.explode(F.sequence("__lo", "__hi")).alias("__day"))
    filled = dense.join(daily, [g, "__day"], "left").fillna(0)
    # The window covers the day itself and the window_days - 1 days before it, like
    # pandas' rolling("<window_days>D") over a daily index.
    win = Window.partitionBy(col(g)).orderBy("__day").rangeBetween(-(agg.window_days - 1), 0)
    out = filled.select(
        col(g),
        # Available once the day has ended: stamped at the next midnight.
        F.timestamp_seconds((F.col("__day") + 1) * DAY_SECONDS).alias(EVENT_TS),
        F.sum("__n").over(win).cast("long").alias(names[0]),
        *[
            (
                F.sum(col(f"__s_{m}")).over(win)
                / F.when(F.sum(col(f"__c_{m}")).over(win) > 0, F.sum(col(f"__c_{m}")).over(win))
            ).cast("double").alias(name)
            for m, name in zip(agg.mean_of, names[1:], strict=True)
        ],
    )
    return out


def aggregate_table(rows, agg: Aggregate) -> pd.DataFrame:
    """`aggregate_frame` collected as the pandas build's table (same columns, dtypes, order)."""
    from pyspark.sql import functions as F

    names = aggregate_column_names(agg)
    frame = aggregate_frame(rows, agg).orderBy(col(agg.group_by), EVENT_TS)
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


def build_tables(
    spark, spec: UseCase, ws: Workspace, on_step: Callable[[str], None] | None = None
) -> BuildResult:
    """`FeatureRepo.build_tables` on `spark`: every offline table the pandas build writes
    (the rows view and each aggregate), at the same paths, with the same rows and columns."""
    from pyspark import StorageLevel

    step = on_step or (lambda _name: None)
    usable = Catalogue(ws.catalogue).usable(spec.name)
    step(f"reading {len(usable)} usable batch(es) on the executors")
    rows = ordered_rows(spark, spec, ws, usable)
    # Read the batches once: the rows view and every aggregate start from these rows.
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    data_dir = ws.feast / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob(f"{PARTS_PREFIX}*"):
        # Part files of a build that was killed before its clean-up: as large as the source.
        shutil.rmtree(stale, ignore_errors=True)
    written = {}
    try:
        view = rows_view_name(spec)
        step(f"rows view {view}: part files on the executors, then one file")
        written[view] = write_single_parquet(
            rows_frame(rows, spec), table_path(data_dir, view), _pandas_schema(spec), data_dir
        )
        for agg in spec.features.aggregates:
            view = f"{spec.name}_{agg.name}"
            step(f"aggregate {view}: {agg.window_days}-day window per {agg.group_by}")
            table = aggregate_table(rows.drop(BATCH_ORD, ROW_ID), agg)
            write_table(table, table_path(data_dir, view))
            written[view] = len(table)
    finally:
        rows.unpersist()
    return BuildResult(tuple(r.batch_id for r in usable), written[rows_view_name(spec)], written)



def build_tables_on(
    master: str, spec: UseCase, ws: Workspace, on_step: Callable[[str], None] | None = None
) -> BuildResult:
    """`build_tables` in a session of its own on `master` (e.g. spark://127.0.0.1:7077 from
    `make spark-up`), stopped afterwards. A master that does not answer raises ClusterError
    before any work; no accepted batch raises NoAcceptedData, as the pandas build does."""
    from mlplatform.spark.cluster import spark_session

    step = on_step or (lambda _name: None)
    if not Catalogue(ws.catalogue).usable(spec.name):
        raise _nothing_to_build(spec)  # before a session starts
    step(f"starting a Spark session on {master}")
    spark = spark_session(
        master,
        app_name=f"mlplatform-features-{spec.name}",
        conf={"spark.ui.showConsoleProgress": "false"},
    )
    try:
        spark.sparkContext.setLogLevel("ERROR")
        return build_tables(spark, spec, ws, step)
    finally:
        spark.stop()
