"""An append-only, hash-chained audit trail: one JSON record per line.

Each record carries the SHA-256 of the previous record (`prev`) and of its own canonical
content (`hash`), so editing, removing, inserting or reordering any line breaks the chain at
that line. Removing records from the *end* leaves a valid chain; the trail's head
(`seq:hash`) is therefore also anchored outside the file (a registered-model tag, see
governance.records) and `verify` compares the two.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

GENESIS = "0" * 64  # the `prev` of the first record
EVENTS = ("approval", "promotion", "rollback", "refusal", "stage")


def audit_path(home: Path, usecase: str) -> Path:
    """Where a use case's trail lives: <home>/governance/<usecase>/audit.jsonl."""
    return Path(home).resolve() / "governance" / usecase / "audit.jsonl"


def record_hash(record: dict) -> str:
    """SHA-256 of the record's canonical JSON without its own `hash` field."""
    body = {k: v for k, v in record.items() if k != "hash"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Verification:
    """The outcome of `AuditTrail.verify`: `problems` name the line and what is wrong."""

    records: int
    problems: list[str] = field(default_factory=list)
    head: str | None = None  # "seq:hash" of the last record

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditTrail:
    """The trail of one use case. Appends hold an exclusive lock, so concurrent writers
    (two approvers at once, the canary controller) chain correctly."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _last(self) -> dict | None:
        if not self.path.exists():
            return None
        last = None
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    last = line
        return json.loads(last) if last else None

    def append(self, event: str, actor: str, **fields: object) -> dict:
        """Add one record chained to the current last one; returns it (with seq and hash)."""
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}; one of {EVENTS}")
        with self._locked():
            last = self._last()
            record = {
                "seq": (last["seq"] + 1) if last else 1,
                "at": now_iso(),
                "event": event,
                "actor": actor,
                **fields,
                "prev": last["hash"] if last else GENESIS,
            }
            record["hash"] = record_hash(record)
            line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())  # an approval acknowledged is an approval kept
        return record

    def records(self) -> list[dict]:
        """Every record, in file order (unverified: call `verify` before trusting them)."""
        if not self.path.exists():
            return []
        out = []
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    out.append(json.loads(line))
        return out

    def verify(self, anchor: str | None = None) -> Verification:
        """Check every line's hash and link; `anchor` ("seq:hash", recorded elsewhere at the
        last append) catches records removed from the end."""
        problems: list[str] = []
        prev, expected_seq, count, by_seq = GENESIS, 1, 0, {}
        if not self.path.exists():
            lines: list[str] = []
        else:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        last = None
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                problems.append(f"line {n}: empty line inside the trail")
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {n}: not a JSON record ({exc.msg})")
                continue
            count += 1
            if not isinstance(rec, dict) or "hash" not in rec:
                problems.append(f"line {n}: not an audit record (no hash)")
                continue
            if record_hash(rec) != rec["hash"]:
                problems.append(
                    f"line {n}: record {rec.get('seq')} ({rec.get('event')}) was edited: "
                    "its content does not match its hash"
                )
            if rec.get("prev") != prev:
                problems.append(
                    f"line {n}: record {rec.get('seq')} does not follow the record before it "
                    "(prev hash mismatch): a record was removed, inserted or reordered here"
                )
            if rec.get("seq") != expected_seq:
                problems.append(
                    f"line {n}: sequence number {rec.get('seq')} where {expected_seq} was "
                    "expected: a record was removed, inserted or reordered here"
                )
            prev = rec["hash"]
            expected_seq = (rec["seq"] + 1) if isinstance(rec.get("seq"), int) else expected_seq
            by_seq[rec.get("seq")] = rec["hash"]
            last = rec
        if anchor:
            problems += _check_anchor(anchor, by_seq, last, len(lines))
        head = f"{last['seq']}:{last['hash']}" if last else None
        return Verification(count, problems, head)


def _check_anchor(anchor: str, by_seq: dict, last: dict | None, n_lines: int) -> list[str]:
    seq_s, _, digest = anchor.partition(":")
    try:
        seq = int(seq_s)
    except ValueError:
        return [f"the trail's anchor {anchor!r} is malformed"]
    if seq not in by_seq:
        last_seq = last["seq"] if last else 0
        return [
            f"after line {n_lines}: the trail ends at record {last_seq} but the registry "
            f"anchor names record {seq}: records were removed from the end"
        ]
    if by_seq[seq] != digest:
        return [f"record {seq} differs from the registry anchor: the trail was rewritten"]
    return []
