"""Read a batch file into Arrow without hiding format problems.

Pandas fills a short (truncated) CSV row with NaN and carries on; the Arrow reader refuses it,
which is what a validation gate needs. Column types come from the file, not the spec, so a
string in a numeric column survives to be reported by TFDV as a type anomaly; the only
coercions are the lossless ones a CSV cannot express (an all-integer float column, an all-empty
column) and reading declared text columns as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pyarrow_hotfix  # noqa: F401 - refuses pickled extension types in user files (CVE-2023-47248)

from mlplatform.spec import ColumnType, UseCase


class UnreadableBatch(ValueError):
    """The file cannot be parsed as a table at all (the whole batch is quarantined)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class LoadedBatch:
    table: pa.Table
    rows: int


def count_records(path: Path, fmt: str) -> int:
    """Rows in the file as a user counts them: CSV data lines (header excluded), parquet rows."""
    if fmt == "parquet":
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception:  # an unreadable parquet file still holds "one" unknown batch
            return 0
    lines = 0
    last = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk
    if last and not last.endswith(b"\n"):
        lines += 1  # a final line without newline is still a record
    return max(lines - 1, 0)


def read_batch(path: Path, spec: UseCase, fmt: str) -> LoadedBatch:
    """Parse the file; raise UnreadableBatch naming the problem if it is not a table."""
    if path.stat().st_size == 0:
        raise UnreadableBatch("EMPTY_FILE", "the file is empty (0 bytes): no header, no rows")
    if fmt == "parquet":
        try:
            table = pq.read_table(path)
        except Exception as exc:
            if "py_extension_type" in str(exc):
                raise UnreadableBatch(
                    "MALFORMED_FILE",
                    "refused: the parquet file carries a pickled Arrow extension type "
                    "(arrow.py_extension_type), which would run code when read "
                    "(CVE-2023-47248); export the data with plain column types",
                ) from exc
            raise UnreadableBatch("MALFORMED_FILE", f"not a readable parquet file: {exc}") from exc
    else:
        text_cols = {
            c.name: pa.string()
            for c in spec.columns
            if c.type in (ColumnType.CATEGORY, ColumnType.STRING)
        }
        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=1 << 24),
                convert_options=pacsv.ConvertOptions(
                    column_types=text_cols, strings_can_be_null=True
                ),
            )
        except pa.ArrowInvalid as exc:
            msg = str(exc)
            kind = "EMPTY_FILE" if "Empty CSV file" in msg else "MALFORMED_FILE"
            raise UnreadableBatch(kind, f"CSV cannot be parsed: {msg}") from exc
    if table.num_rows == 0:
        raise UnreadableBatch("EMPTY_FILE", "the file has a header but no rows")
    return LoadedBatch(table=_coerce(table, spec), rows=table.num_rows)


def _coerce(table: pa.Table, spec: UseCase) -> pa.Table:
    declared = {c.name: c.type for c in spec.columns}
    cols = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        want = declared.get(name)
        if pa.types.is_null(col.type) and want is not None:
            col = col.cast(_arrow_type(want))  # all-empty column: no values to contradict it
        elif want is ColumnType.FLOAT and pa.types.is_integer(col.type):
            col = col.cast(pa.float64())  # "12" is a valid float; CSV cannot say 12.0
        elif want is ColumnType.INT and pa.types.is_floating(col.type) and _integral(col):
            col = col.cast(pa.int64())  # "22.0" (how pandas writes a nullable int) is 22
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def _integral(col: pa.ChunkedArray) -> bool:
    values = col.drop_null()
    if len(values) == 0:
        return True
    finite = pc.all(pc.is_finite(values)).as_py()
    return bool(finite) and pc.all(pc.equal(pc.floor(values), values)).as_py()


def _arrow_type(t: ColumnType) -> pa.DataType:
    return {
        ColumnType.INT: pa.int64(),
        ColumnType.FLOAT: pa.float64(),
        ColumnType.CATEGORY: pa.string(),
        ColumnType.STRING: pa.string(),
    }[t]
