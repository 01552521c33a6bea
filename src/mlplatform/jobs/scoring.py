"""Batch scoring from the same artifact as real-time serving: chunked, with progress.

Every output row carries the model version and the data version (the input file's content
hash, the same id the data catalogue uses), so a prediction can be traced to both.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    else:
        yield from pd.read_csv(path, chunksize=chunk_rows, keep_default_na=True)


def score_file(
    model,
    model_version: str,
    source: Path,
    output: Path,
    chunk_rows: int = 50_000,
    progress: bool = True,
) -> BatchResult:
    """Score `source` (CSV or parquet with the model's input columns) into parquet `output`."""
    from mlplatform.packaging import scoring_check
    from mlplatform.serving.contract import Contract, ContractError

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
                frame = contract.parse_v2([(c, "", chunk[c].tolist()) for c in contract.names])
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
            if progress:
                pct = f"{100 * done / total:5.1f}%" if total else ""
                print(f"\rscored {done:,}/{total or '?':,} rows {pct}", end="", file=sys.stderr)
    finally:
        if writer is not None:
            writer.close()
    if progress:
        print(file=sys.stderr)
    tmp.replace(output)
    return BatchResult(done, output, model_version, data_version, time.perf_counter() - start)
