"""Batch scoring on a Spark cluster with the same MLflow artifact as local scoring.

The model is applied with `mlflow.pyfunc.spark_udf` (env_manager="local": executors run the
locked env's interpreter; docs/decisions/0027). Before any row is written, the artifact's
packed reference rows are scored on the executors through that same UDF and compared with the
probabilities packaging recorded: a skewed executor environment fails the job instead of
writing wrong scores. The output is a Parquet dataset (one file per task, in input order) with
the columns local scoring writes: the input's columns, `probability`, `prediction`,
`model_version`, `data_version` (the SHA-256 of the input file, the catalogue's batch id).

A row the request contract would refuse (a number that is not one, infinite or out of range,
a value unlike the rest of its column) does not fail the job: it is left out and written with
the reason to `<output>.rejected/`, and the result counts it.
"""

from __future__ import annotations

import csv
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.data.ingest import detect_format, file_sha256
from mlplatform.packaging import scoring_check
from mlplatform.packaging.contract import MAX_ABS_NUMBER, Contract
from mlplatform.spark.columns import col

ERROR = "row_error"
RESULT_TYPE = "probability double, prediction long"
# Enough rows for pandas to settle each column's type, as its chunked reader would.
TYPE_SAMPLE_ROWS = 10_000


@dataclass(frozen=True)
class SparkBatchResult:
    """What a Spark scoring run wrote."""

    rows: int  # scored rows written to `output`
    rejected: int  # rows left out, written with their reason to `rejected_output`
    output: Path
    rejected_output: Path | None
    model_version: str
    data_version: str
    seconds: float
    check_max_abs_diff: float | None  # the executors' scoring check; None if none packed


def rejected_path(output: Path) -> Path:
    """Where the rows refused by the contract go, beside the output."""
    return output.with_name(output.name + ".rejected")


def _spark_type(dtype) -> str:
    """Spark type of a column that pandas' CSV reader typed as `dtype` (what local writes)."""
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    return "string"


def _read_csv(spark, source: Path):
    """The CSV as local scoring types it: every column read as text, then cast to the type
    pandas gives the file's first rows; returns (frame, {column: spark type})."""
    from pyspark.sql.types import StringType, StructField, StructType

    with open(source, newline="") as fh:
        header = next(csv.reader(fh))
    sample = pd.read_csv(source, nrows=TYPE_SAMPLE_ROWS, keep_default_na=True)
    types = {c: _spark_type(sample[c].dtype) for c in header}
    schema = StructType([StructField(c, StringType()) for c in header])
    raw = (
        spark.read.option("header", True)
        .option("mode", "PERMISSIVE")
        .schema(schema)
        .csv(str(source))
    )
    return raw, types


def _typed_input(contract: Contract, raw, types: dict[str, str], from_text: bool):
    """Per model input: the signature-typed column the UDF gets, and the error (or null) of
    each row, following serving.contract's rules (numbers to text for categories; no
    booleans, infinities or |x| > MAX_ABS_NUMBER for numbers)."""
    from pyspark.sql import functions as F

    typed, errors = {}, []
    for f in contract.fields:
        c, t = col(f.name), types[f.name]
        if f.kind == "double":
            if t == "boolean":
                raise ValueError(
                    f"column {f.name!r} holds booleans; the model expects numbers there"
                )
            x = c.cast("double")
            if from_text or t == "string":
                # Text that is not a number: Spark's cast gives null where the value was not.
                errors.append(
                    F.when(c.isNotNull() & x.isNull(),
                           F.concat(F.lit(f"{f.name}: expected a number, got "), c))
                )
            errors.append(
                F.when(x.isin(float("inf"), float("-inf")),
                       F.lit(f"{f.name}: expected a finite number"))
                .when(F.abs(x) > MAX_ABS_NUMBER,
                      F.lit(f"{f.name}: out of range (|x| <= {MAX_ABS_NUMBER:g})"))
            )
            typed[f.name] = x
        else:
            if t in ("long", "double"):
                # A category coded as a number is that number's text, "8" for 8.0.
                x = c.cast("double")
                text = F.when(x == F.floor(x), x.cast("long").cast("string")).otherwise(
                    c.cast("string")
                )
                typed[f.name] = F.when(c.isNull() | F.isnan(x), None).otherwise(text)
            elif t == "boolean":
                raise ValueError(f"column {f.name!r} holds booleans; the model expects text")
            else:
                typed[f.name] = c.cast("string")
    return typed, errors


def _kept_column(name: str, t: str, from_text: bool, errors: list):
    """An input column as it goes to the output, cast (CSV) to the type local scoring gives
    it; a value that does not fit that type is the row's error, not a silent null."""
    from pyspark.sql import functions as F

    c = col(name)
    if not from_text or t == "string":
        return c
    x = c.cast(t)
    errors.append(
        F.when(c.isNotNull() & x.isNull(),
               F.concat(F.lit(f"{name}: expected a {t} like the file's first rows, got "), c))
    )
    return x


def _min_partitions(spark, source: Path) -> None:
    # At least two tasks per core, so every executor works on a file of any size, and no
    # shuffle: part files keep the input's row order.
    cores = max(int(spark.sparkContext.defaultParallelism), 1)
    split = max(source.stat().st_size // (2 * cores) + 1, 1 << 20)
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(min(split, 128 << 20)))


def run_check_on_executors(spark, udf, model, contract: Contract) -> float | None:
    """Score the artifact's packed reference rows with `udf` on the executors; raise
    ScoringMismatch (with what to do) if they differ from packaging's. Returns the largest
    difference, None when the artifact packs no check."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    check = scoring_check.packed(model)
    if check is None:
        return None
    frame = contract.parse_v1({"instances": check["rows"]})
    frame.insert(0, "_i", np.arange(len(frame), dtype="int64"))
    schema = StructType(
        [StructField("_i", LongType())]
        + [
            StructField(f.name, DoubleType() if f.kind == "double" else StringType())
            for f in contract.fields
        ]
    )
    records = [
        tuple(None if (isinstance(v, float) and np.isnan(v)) else v for v in r)
        for r in frame.astype(object).itertuples(index=False, name=None)
    ]
    # One partition per core: every executor's Python runs the check, not just one.
    cores = max(int(spark.sparkContext.defaultParallelism), 1)
    df = spark.createDataFrame(records, schema).repartition(cores)
    inputs = F.struct(*[col(n) for n in contract.names])
    scored = df.select("_i", udf(inputs).probability.alias("p"))
    got = sorted((r["_i"], r["p"]) for r in scored.collect())
    return scoring_check.enforce(check, np.array([p for _, p in got])).max_abs_diff


def score_file_spark(
    spark,
    model_uri: str,
    model_version: str,
    source: Path,
    output: Path,
    model=None,
) -> SparkBatchResult:
    """Score `source` (CSV or parquet) with the artifact at `model_uri` on `spark`'s cluster
    into the Parquet dataset `output` (a directory). `model` is the artifact already loaded on
    the driver (for its signature and packed check); loaded here when None.

    Raises FileNotFoundError, ValueError (input lacks model columns, a column of the wrong
    kind) and ScoringMismatch before writing anything; rows the contract refuses are counted
    and written to `<output>.rejected/`.
    """
    import mlflow
    from pyspark.sql import functions as F

    source, output = Path(source).resolve(), Path(output).resolve()
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such input file")
    start = time.perf_counter()
    if model is None:
        model = mlflow.pyfunc.load_model(model_uri)
    contract = Contract.of_model(model, model_uri)
    data_version = file_sha256(source)  # the data catalogue's batch id for these bytes

    from_text = detect_format(source) != "parquet"
    if from_text:
        raw, types = _read_csv(spark, source)
    else:
        raw = spark.read.parquet(str(source))
        types = {f.name: f.dataType.simpleString() for f in raw.schema.fields}
        types = {c: ("long" if t in ("int", "bigint", "smallint", "tinyint") else t)
                 for c, t in types.items()}
    missing = [c for c in contract.names if c not in raw.columns]
    if missing:
        raise ValueError(f"{source}: input lacks model input columns {missing}")
    _min_partitions(spark, source)

    udf = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=RESULT_TYPE, env_manager="local")
    check_diff = run_check_on_executors(spark, udf, model, contract)

    typed, errors = _typed_input(contract, raw, types, from_text)
    kept = {c: _kept_column(c, types[c], from_text, errors) for c in raw.columns}
    error = F.concat_ws("; ", *errors) if errors else F.lit("")
    checked = raw.select(
        *[kept[c].alias(c) for c in raw.columns],
        *[typed[n].alias(f"__in_{n}") for n in contract.names],
        F.when(error == "", None).otherwise(error).alias(ERROR),
        *[col(c).alias(f"__raw_{c}") for c in raw.columns],
    )
    inputs = F.struct(*[col(f"__in_{n}").alias(n) for n in contract.names])
    scored = checked.where(F.col(ERROR).isNull()).withColumn("__s", udf(inputs)).select(
        *[col(c) for c in raw.columns],
        F.col("__s.probability").alias("probability"),
        F.col("__s.prediction").alias("prediction"),
        F.lit(model_version).alias("model_version"),
        F.lit(data_version).alias("data_version"),
    )
    # Written aside, then moved: a failed job never leaves a half-written output behind.
    tmp = output.with_name(output.name + ".partial")
    scored.write.mode("overwrite").parquet(str(tmp))
    rej = rejected_path(output)
    rej_tmp = rej.with_name(rej.name + ".partial")
    bad = checked.where(F.col(ERROR).isNotNull()).select(
        *[col(f"__raw_{c}").alias(c) for c in raw.columns], ERROR
    )
    bad.coalesce(1).write.mode("overwrite").parquet(str(rej_tmp))
    for done, part in ((output, tmp), (rej, rej_tmp)):
        if done.exists():
            shutil.rmtree(done) if done.is_dir() else done.unlink()
        part.rename(done)
    rows = spark.read.parquet(str(output)).count()  # footers only: no data read
    rejected = spark.read.parquet(str(rej)).count()
    if rejected == 0:
        shutil.rmtree(rej)
    return SparkBatchResult(
        rows=rows,
        rejected=rejected,
        output=output,
        rejected_output=rej if rejected else None,
        model_version=model_version,
        data_version=data_version,
        seconds=time.perf_counter() - start,
        check_max_abs_diff=check_diff,
    )


def rejected_examples(result: SparkBatchResult, n: int = 5) -> list[str]:
    """Up to `n` reasons from the rejected rows, for the command's report."""
    if result.rejected_output is None:
        return []
    frame = pd.read_parquet(result.rejected_output, columns=[ERROR])
    return frame[ERROR].head(n).tolist()
