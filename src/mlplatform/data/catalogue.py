"""A small SQLite catalogue of data versions, so lineage can name the batches behind a model."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id       TEXT PRIMARY KEY,   -- sha256 of the file's bytes
    usecase        TEXT NOT NULL,
    source         TEXT NOT NULL,      -- where the bytes came from
    filename       TEXT NOT NULL,
    format         TEXT NOT NULL,
    size_bytes     INTEGER NOT NULL,
    rows           INTEGER NOT NULL,
    schema_version TEXT NOT NULL,      -- hash of the TFDV schema the batch was checked with
    spec_hash      TEXT NOT NULL,
    ingested_at    TEXT NOT NULL,
    status         TEXT NOT NULL,
    status_reason  TEXT NOT NULL DEFAULT '',
    derived_from   TEXT,               -- a corrected batch points at the one it replaces
    stored_path    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id  TEXT NOT NULL REFERENCES batches(batch_id),
    at        TEXT NOT NULL,
    event     TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
);
-- The data drift is judged against: the batches that trained the current champion.
CREATE TABLE IF NOT EXISTS drift_references (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    usecase   TEXT NOT NULL,
    at        TEXT NOT NULL,
    origin    TEXT NOT NULL,           -- e.g. "champion v3"
    batch_ids TEXT NOT NULL            -- JSON list
);
"""


class BatchStatus(StrEnum):
    INGESTED = "ingested"  # stored, not yet validated (a crash between steps leaves this)
    ACCEPTED = "accepted"
    QUARANTINED = "quarantined"
    RELEASED = "released"  # accepted by an operator after quarantine
    SUPERSEDED = "superseded"  # replaced by a corrected batch
    RETIRED = "retired"  # taken out of use by an operator; bytes kept, `restore` undoes it


USABLE = (BatchStatus.ACCEPTED, BatchStatus.RELEASED)


@dataclass(frozen=True)
class BatchRecord:
    """One data version."""

    batch_id: str
    usecase: str
    source: str
    filename: str
    format: str
    size_bytes: int
    rows: int
    schema_version: str
    spec_hash: str
    ingested_at: str
    status: BatchStatus
    status_reason: str
    derived_from: str | None
    stored_path: str

    @property
    def short_id(self) -> str:
        return self.batch_id[:12]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Catalogue:
    """Data versions and their history, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:  # one transaction: committed whole or not at all
                yield db
        finally:
            db.close()

    def add(self, rec: BatchRecord) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rec.batch_id,
                    rec.usecase,
                    rec.source,
                    rec.filename,
                    rec.format,
                    rec.size_bytes,
                    rec.rows,
                    rec.schema_version,
                    rec.spec_hash,
                    rec.ingested_at,
                    rec.status.value,
                    rec.status_reason,
                    rec.derived_from,
                    rec.stored_path,
                ),
            )
            db.execute(
                "INSERT INTO events (batch_id, at, event, detail) VALUES (?,?,?,?)",
                (rec.batch_id, rec.ingested_at, "ingested", rec.source),
            )

    def get(self, batch_id: str) -> BatchRecord | None:
        """Look up by full id or a unique prefix (as printed by `quarantine list`)."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM batches WHERE batch_id = ?", (batch_id,)).fetchall()
            if not rows and batch_id.isalnum():  # ids are hex: a prefix is safe in GLOB
                rows = db.execute(
                    "SELECT * FROM batches WHERE batch_id GLOB ?", (batch_id + "*",)
                ).fetchall()
        if len(rows) > 1:
            raise KeyError(f"batch id prefix {batch_id!r} is ambiguous; give more characters")
        return _record(rows[0]) if rows else None

    def set_status(self, batch_id: str, status: BatchStatus, reason: str = "") -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE batches SET status=?, status_reason=? WHERE batch_id=?",
                (status.value, reason, batch_id),
            )
            db.execute(
                "INSERT INTO events (batch_id, at, event, detail) VALUES (?,?,?,?)",
                (batch_id, now_iso(), status.value, reason),
            )

    def reopen(self, batch_id: str, schema_version: str, spec_hash: str, reason: str) -> None:
        """Back to `ingested` under new rules, so the gate judges it again (history kept)."""
        with self._connect() as db:
            db.execute(
                "UPDATE batches SET status=?, status_reason=?, schema_version=?, spec_hash=? "
                "WHERE batch_id=?",
                (BatchStatus.INGESTED.value, reason, schema_version, spec_hash, batch_id),
            )
            db.execute(
                "INSERT INTO events (batch_id, at, event, detail) VALUES (?,?,?,?)",
                (batch_id, now_iso(), "reopened", reason),
            )

    def list(self, usecase: str, status: BatchStatus | None = None) -> list[BatchRecord]:
        q, args = "SELECT * FROM batches WHERE usecase=?", [usecase]
        if status is not None:
            q += " AND status=?"
            args.append(status.value)
        with self._connect() as db:
            rows = db.execute(q + " ORDER BY ingested_at, rowid", args).fetchall()
        return [_record(r) for r in rows]

    def usable(self, usecase: str) -> list[BatchRecord]:
        """Batches that passed the gate (or were released by an operator), oldest first."""
        return [b for b in self.list(usecase) if b.status in USABLE]

    def retire(self, batch_id: str, reason: str) -> BatchRecord:
        """Take a batch out of every feature build and reference; kept on disk and recorded."""
        rec = self._operable(batch_id, reason)
        if rec.status is BatchStatus.RETIRED:
            raise ValueError(f"batch {rec.short_id} is already retired")
        self.set_status(rec.batch_id, BatchStatus.RETIRED, f"was={rec.status.value}; {reason}")
        return self.get(rec.batch_id)

    def restore(self, batch_id: str, reason: str) -> BatchRecord:
        """Undo `retire`: the batch gets back the status it had."""
        rec = self._operable(batch_id, reason)
        if rec.status is not BatchStatus.RETIRED:
            raise ValueError(f"batch {rec.short_id} is {rec.status.value}, not retired")
        retired = [e for e in self.events(rec.batch_id) if e["event"] == BatchStatus.RETIRED]
        before = retired[-1]["detail"].split(";", 1)[0].removeprefix("was=")
        self.set_status(rec.batch_id, BatchStatus(before), f"restored: {reason}")
        return self.get(rec.batch_id)

    def _operable(self, batch_id: str, reason: str) -> BatchRecord:
        if not reason.strip():
            raise ValueError("give a --reason (it is kept in the catalogue's history)")
        rec = self.get(batch_id)
        if rec is None:
            raise KeyError(f"no batch {batch_id!r} in the catalogue")
        return rec

    def set_reference(self, usecase: str, origin: str, batch_ids: list[str]) -> None:
        """Record the batches later batches are judged against (the champion's data)."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO drift_references (usecase, at, origin, batch_ids) VALUES (?,?,?,?)",
                (usecase, now_iso(), origin, json.dumps(sorted(batch_ids))),
            )

    def reference(self, usecase: str) -> tuple[str, list[str]] | None:
        """The latest recorded reference: (origin, batch ids), or None."""
        with self._connect() as db:
            row = db.execute(
                "SELECT origin, batch_ids FROM drift_references WHERE usecase=? "
                "ORDER BY id DESC LIMIT 1",
                (usecase,),
            ).fetchone()
        return (row["origin"], json.loads(row["batch_ids"])) if row else None

    def events(self, batch_id: str) -> list[dict]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT at, event, detail FROM events WHERE batch_id=? ORDER BY id", (batch_id,)
            ).fetchall()
        return [dict(r) for r in rows]


def _record(row: sqlite3.Row) -> BatchRecord:
    d = dict(row)
    d["status"] = BatchStatus(d["status"])
    return BatchRecord(**d)
