"""Batch scoring from the same artifact as real-time serving: chunked, with progress.

Every output row carries the model version and the data version (the input file's content
hash, the same id the data catalogue uses), so a prediction can be traced to both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow_hotfix  # noqa: F401 - refuses pickled extension types in user files (CVE-2023-47248)

from mlplatform.data.ingest import detect_format, file_sha256
from mlplatform.data.reading import count_records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchResult:
    rows: int
    output: Path
    model_version: str
    data_version: str
    seconds: float


def _is_parquet(path: Path) -> bool:
    return detect_format(path) == "parquet"


def _chunks(path: Path, chunk_rows: int):
    if _is_parquet(path):
        file = pq.ParquetFile(path)
        if file.metadata.num_rows == 0:
            # No batches to iterate: one empty chunk, so an empty input gives an empty output
            # with the columns of a scored one (as an empty CSV's one empty chunk does).
            yield file.schema_arrow.empty_table().to_pandas()
            return
        for batch in file.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    else:
        yield from pd.read_csv(path, chunksize=chunk_rows, keep_default_na=True)


def score_file(
    model,
    model_version: str,
    source: Path,
    output: Path,
    chunk_rows: int = 50_000,
    progress: Callable[[int, int], None] | bool | None = None,
) -> BatchResult:
    """Score `source` (CSV or parquet with the model's input columns) into parquet `output`.

    `progress(done, total)` is called after each chunk (total 0 when the file does not say)."""
    from mlplatform.packaging import scoring_check
    from mlplatform.packaging.contract import Contract, ContractError

    source, output = Path(source), Path(output)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such input file")
    total = count_records(source, "parquet" if _is_parquet(source) else "csv")
    data_version = file_sha256(source)  # the data catalogue's batch id for these bytes
    contract = Contract.of_model(model, model_version)
    # A skewed environment must not write a file of wrong scores.
    scoring_check.run(
        model, lambda body: model.predict(contract.parse_v1(body))["probability"].to_numpy()
    )
    tmp = output.with_suffix(output.suffix + ".partial")  # never a half-written output
    writer = None
    done, start = 0, time.perf_counter()
    try:
        for chunk in _chunks(source, chunk_rows):
            missing = [c for c in contract.names if c not in chunk.columns]
            if missing:
                raise ValueError(f"{source}: input lacks model input columns {missing}")
            try:
                frame = contract.columns_of_frame(chunk).to_frame()
            except ContractError as exc:
                raise ContractError(f"{source}, rows from {done}: {exc}") from exc
            out = model.predict(frame)
            result = chunk.reset_index(drop=True).assign(
                probability=out["probability"].to_numpy(),
                prediction=out["prediction"].to_numpy(),
                model_version=model_version,
                data_version=data_version,
            )
            table = pa.Table.from_pandas(result, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table.cast(writer.schema))
            done += len(chunk)
            if callable(progress):
                progress(done, total or 0)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(output)
    return BatchResult(done, output, model_version, data_version, time.perf_counter() - start)


class ScoringLoadError(RuntimeError):
    """The registered model could not be resolved or loaded; the message says what to check."""


def score_job(
    usecase: str,
    source: Path,
    output: Path,
    home: Path,
    version: str | None = None,
    alias: str | None = None,
    chunk_rows: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Score `source` with the use case's registered model (`version`, else `alias`, else the
    challenger), the alias pinned to its version first so every row names what scored it."""
    model, _uri, label = _registered_model(usecase, home, version, alias)
    return score_file(model, label, source, output, chunk_rows, progress)


def score_job_spark(
    usecase: str,
    source: Path,
    output: Path,
    home: Path,
    master: str,
    version: str | None = None,
    alias: str | None = None,
):
    """`score_job` on a Spark cluster at `master` (e.g. spark://127.0.0.1:7077 from
    `make spark-up`): the same model resolution, scored by mlplatform.spark.scoring."""
    from mlplatform.spark.cluster import spark_session
    from mlplatform.spark.scoring import score_file_spark

    model, uri, label = _registered_model(usecase, home, version, alias)
    spark = spark_session(master, app_name=f"mlplatform-score-{usecase}")
    try:
        return score_file_spark(spark, uri, label, source, output, model=model)
    finally:
        spark.stop()


def _registered_model(usecase: str, home: Path, version: str | None, alias: str | None):
    """(pyfunc, pinned `models:/` URI, `name/version` label) of the selected version."""
    import mlflow

    from mlplatform.registry.models import pin, selector_uri
    from mlplatform.spec import load_usecase
    from mlplatform.tracking import use_workspace

    spec = load_usecase(usecase)
    use_workspace(Path(home), spec.name)
    selector = selector_uri(spec.name, version, alias)
    try:
        uri, label = pin(selector)
        return mlflow.pyfunc.load_model(uri), uri, label
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for "not there"
        raise ScoringLoadError(
            f"{selector}: cannot load ({exc}); see `mlplatform models list`"
        ) from exc
