"""Row content fingerprints: a batch's rows recognised when they were accepted before.

A re-sent export has new bytes (another order, another file name, a few rows more) but rows
that are already in the catalogue. Each row of the spec's columns is hashed in a canonical
form (numbers as float64, everything else as text, nulls alike), so the same row hashes the
same whether it was read as an int, a float or a nullable int.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mlplatform.data.catalogue import USABLE, BatchRecord, Catalogue
from mlplatform.data.reading import read_batch
from mlplatform.spec import UseCase
from mlplatform.workspace import Workspace

HASHES_FILE = "row_hashes.npy"


def arrow_numpy(values) -> np.ndarray:
    """pyarrow 10's ChunkedArray.to_numpy takes no options: combine, then convert."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_numpy(zero_copy_only=False)


def row_hashes(frame: pa.Table | pd.DataFrame, spec: UseCase) -> np.ndarray:
    """One uint64 per row over the spec's columns present in `frame` (in spec order)."""
    cols = {}
    names = frame.column_names if isinstance(frame, pa.Table) else list(frame.columns)
    for c in spec.columns:
        if c.name not in names:
            continue
        values = frame[c.name]
        if isinstance(values, pa.ChunkedArray):
            t = values.type
            if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t):
                values = pd.Series(arrow_numpy(values.cast(pa.float64())))
            else:
                values = pd.Series(arrow_numpy(values.cast(pa.string())), dtype=object)
        elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype
        ):
            values = pd.Series(values.to_numpy(dtype="float64", na_value=np.nan))
        else:
            values = values.astype("object").where(values.notna(), None)
        cols[c.name] = values.reset_index(drop=True)
    if not cols:
        return np.zeros(0, dtype="uint64")
    return pd.util.hash_pandas_object(pd.DataFrame(cols), index=False).to_numpy()


def save_hashes(hashes: np.ndarray, batch_dir: Path) -> None:
    np.save(batch_dir / HASHES_FILE, hashes, allow_pickle=False)


def load_hashes(batch_dir: Path) -> np.ndarray | None:
    p = batch_dir / HASHES_FILE
    return np.load(p, allow_pickle=False) if p.exists() else None


def first_occurrences(per_batch: list[np.ndarray]) -> list[np.ndarray]:
    """Per batch (oldest first), a mask of rows whose content no earlier batch holds: a row
    re-sent in a later batch enters a training set once."""
    seen = np.zeros(0, dtype="uint64")
    out = []
    for hashes in per_batch:
        out.append(~overlap_mask(hashes, seen))  # repeats inside a batch: the duplicate check's
        seen = np.union1d(seen, hashes)
    return out


def overlap_mask(hashes: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """True for each row whose content is in `seen`."""
    if len(seen) == 0 or len(hashes) == 0:
        return np.zeros(len(hashes), dtype=bool)
    return np.isin(hashes, seen)


def batch_hashes(rec: BatchRecord, spec: UseCase, ws: Workspace) -> np.ndarray:
    """Row fingerprints of a stored batch (computed once, kept beside its bytes)."""
    d = ws.batch_dir(rec.batch_id)
    hashes = load_hashes(d)
    if hashes is None:
        hashes = row_hashes(read_batch(Path(rec.stored_path), spec, rec.format).table, spec)
        save_hashes(hashes, d)
    return hashes


def seen_hashes(spec: UseCase, ws: Workspace, exclude: str = "") -> np.ndarray:
    """Fingerprints of every row in usable batches (but `exclude`)."""
    cat = Catalogue(ws.catalogue)
    parts = [
        batch_hashes(r, spec, ws)
        for r in cat.list(spec.name)
        if r.status in USABLE and r.batch_id != exclude
    ]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype="uint64")
