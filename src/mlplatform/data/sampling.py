"""A smaller batch drawn from a real one, for quick experiments (notebooks, smoke runs).

The sample keeps whole rows with their values exactly as written (CSV fields are copied as
text, never re-parsed and re-printed), so it validates like the file it came from.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mlplatform.data.ingest import detect_format


def sample_batch(source: Path, out_dir: Path, rows: int | None, seed: int = 0) -> Path:
    """Write `rows` rows of `source`, drawn without replacement and kept in file order, to
    `out_dir/<name>-sample<rows>-seed<seed><suffix>` (same format); returns that path.

    `rows=None`, or at least as many rows as the file holds, means the whole file: `source`
    itself is returned and nothing is written. The same seed gives the same sample.
    """
    source = Path(source)
    if rows is None:
        return source
    if rows < 1:
        raise ValueError(f"rows must be >= 1 (or None for the whole file), got {rows}")
    dest = Path(out_dir) / f"{source.stem}-sample{rows}-seed{seed}{source.suffix}"
    if detect_format(source) == "parquet":
        table = pq.read_table(source)
        if rows >= table.num_rows:
            return source
        dest.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(_pick(table.num_rows, rows, seed)), dest)
        return dest
    # newline="" keeps quoted line breaks inside fields, as the csv module requires.
    with open(source, newline="") as fh:
        header, *body = list(csv.reader(fh))
    if rows >= len(body):
        return source
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(header)
        out.writerows(body[i] for i in _pick(len(body), rows, seed))
    return dest


def _pick(total: int, rows: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False))
