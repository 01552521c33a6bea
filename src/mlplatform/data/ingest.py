"""Ingest a batch: store its bytes content-addressed and record a data version.

Crash safety: the bytes are copied to a temporary name, synced and renamed into place before
the catalogue row is written, so an interrupted ingest leaves either nothing or a complete file
that the next run adopts. Re-ingesting the same bytes returns the existing version.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from mlplatform.data.catalogue import BatchRecord, BatchStatus, Catalogue, now_iso
from mlplatform.data.reading import count_records
from mlplatform.spec import UseCase
from mlplatform.workspace import Workspace

_TMP_PREFIX = ".incoming-"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def detect_format(path: Path) -> str:
    """`parquet` or `csv`: Parquet's magic bytes decide first, since files without a suffix
    are common (a KFP Dataset artifact, an export named `part-0`); then the suffix."""
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as fh:
            if fh.read(4) == b"PAR1":
                return "parquet"
    except OSError:
        pass  # a missing file is reported by whoever opens it
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ""):
        return "csv"
    raise ValueError(f"{path}: unknown batch format {suffix!r}; give a .csv or .parquet file")


def ingest(
    path: Path,
    spec: UseCase,
    ws: Workspace,
    schema_version: str,
    derived_from: str | None = None,
) -> tuple[BatchRecord, bool]:
    """Store the file and record it; returns (record, created). Same bytes, same record."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such batch file")
    fmt = detect_format(path)
    cat = Catalogue(ws.catalogue)
    _sweep_incomplete(ws)
    digest = file_sha256(path)
    existing = cat.get(digest)
    if existing is not None:
        return existing, False
    dest_dir = ws.batch_dir(digest)
    dest = dest_dir / f"batch.{fmt}"
    if not (dest.exists() and file_sha256(dest) == digest):
        tmp = ws.batches / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        with open(path, "rb") as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        if file_sha256(tmp) != digest:
            tmp.unlink()
            raise OSError(f"{path} changed while it was being ingested; try again")
        dest_dir.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    rec = BatchRecord(
        batch_id=digest,
        usecase=spec.name,
        source=str(path.resolve()),
        filename=path.name,
        format=fmt,
        size_bytes=dest.stat().st_size,
        rows=count_records(dest, fmt),
        schema_version=schema_version,
        spec_hash=spec.spec_hash(),
        ingested_at=now_iso(),
        status=BatchStatus.INGESTED,
        status_reason="",
        derived_from=derived_from,
        stored_path=str(dest),
    )
    cat.add(rec)
    return rec, True


def _sweep_incomplete(ws: Workspace) -> None:
    """Remove partial copies left by an ingest that was killed mid-copy."""
    for tmp in ws.batches.glob(f"{_TMP_PREFIX}*"):
        tmp.unlink(missing_ok=True)
