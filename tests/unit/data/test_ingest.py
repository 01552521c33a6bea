"""Data versions: content-addressed, idempotent, and safe against an interrupted ingest."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from mlplatform.data.catalogue import BatchStatus, Catalogue
from mlplatform.data.ingest import file_sha256, ingest
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.schema import build_schema, schema_version

from ...conftest import source_of


def test_same_bytes_same_version(taxi, workspace_factory, tmp_path):
    ws = workspace_factory(taxi)
    src = source_of(taxi)
    copy = tmp_path / "again.csv"
    shutil.copy(src, copy)
    rec1, created1 = ingest(src, taxi, ws, "v1")
    rec2, created2 = ingest(copy, taxi, ws, "v1")  # another name, same bytes
    assert created1 and not created2
    assert rec1.batch_id == rec2.batch_id == file_sha256(src)
    assert len(Catalogue(ws.catalogue).list("taxi")) == 1
    assert rec1.rows == 15002 and rec1.spec_hash == taxi.spec_hash()


def test_gate_is_idempotent(taxi, workspace_factory):
    ws = workspace_factory(taxi)
    gate = Gate(taxi, build_schema(taxi), ws)
    first = gate.process(source_of(taxi))
    again = gate.process(source_of(taxi))
    assert first.accepted and again.accepted and again.report is None
    assert [e["event"] for e in gate.cat.events(first.record.batch_id)] == ["ingested", "accepted"]


def test_recovers_partial_copy_and_unrecorded_file(taxi, workspace_factory):
    ws = workspace_factory(taxi)
    src = source_of(taxi)
    digest = file_sha256(src)
    # A kill mid-copy leaves a temporary file; a kill after the rename leaves an unrecorded one.
    (ws.batches / ".incoming-deadbeef").write_bytes(src.read_bytes()[:1000])
    (ws.batch_dir(digest)).mkdir()
    shutil.copy(src, ws.batch_dir(digest) / "batch.csv")
    rec, created = ingest(src, taxi, ws, schema_version(build_schema(taxi)))
    assert created and rec.batch_id == digest
    assert not list(ws.batches.glob(".incoming-*"))
    assert len(Catalogue(ws.catalogue).list("taxi")) == 1


def test_batch_left_unjudged_is_judged_on_rerun(taxi, workspace_factory):
    ws = workspace_factory(taxi)
    schema = build_schema(taxi)
    ingest(source_of(taxi), taxi, ws, schema_version(schema))  # killed before validation
    out = Gate(taxi, schema, ws).process(source_of(taxi))
    assert out.record.status is BatchStatus.ACCEPTED and out.accepted_rows == 15002


def _big_batch(taxi, tmp_path, copies=40):
    df = pd.read_csv(source_of(taxi))
    big = tmp_path / "big.csv"
    pd.concat([df] * copies, ignore_index=True).to_csv(big, index=False)
    return big


@pytest.mark.heavy
def test_killed_ingest_process_recovers(taxi, tmp_path, repo_root):
    """SIGKILL the real CLI mid-copy and mid-validation; a rerun loses and duplicates nothing."""
    big = _big_batch(taxi, tmp_path)
    home = tmp_path / "home"
    cmd = [
        sys.executable,
        "-m",
        "mlplatform.cli",
        "ingest",
        str(big),
        "-u",
        "taxi",
        "--home",
        str(home),
    ]
    batches = home / "taxi" / "batches"
    db = home / "taxi" / "catalogue.db"

    def kill_when(cond, timeout=120):
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=repo_root
        )
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            if cond():
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait()
        return proc.returncode == -signal.SIGKILL

    def statuses():
        if not db.exists():
            return []
        try:
            with sqlite3.connect(db) as c:
                return [r[0] for r in c.execute("SELECT status FROM batches")]
        except sqlite3.Error:
            return []

    # duplicated rows make this batch a DUPLICATES quarantine; what matters is that it is judged
    assert kill_when(lambda: batches.exists() and any(batches.glob(".incoming-*")))
    assert kill_when(lambda: statuses() == ["ingested"])
    final = subprocess.run(cmd, capture_output=True, text=True, cwd=repo_root)
    assert final.returncode in (0, 3), final.stderr
    assert len(statuses()) == 1 and statuses()[0] in ("accepted", "quarantined")
    assert not list(batches.glob(".incoming-*"))
    stored = next((batches / file_sha256(big)).glob("batch.*"))
    assert file_sha256(stored) == file_sha256(big)


def test_a_parquet_file_with_a_pickled_type_is_refused_unread(taxi, workspace_factory, tmp_path):
    """pyarrow < 14 unpickles `arrow.py_extension_type` columns from a file (CVE-2023-47248):
    a crafted batch could run code at ingest. The gate quarantines it as unreadable instead,
    and the pickle's payload never runs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = tmp_path / "payload-ran"

    class Crafted(pa.PyExtensionType):
        def __init__(self) -> None:
            super().__init__(pa.int64())

        def __reduce__(self):  # what unpickling would call: touch a file
            return (marker.touch, ())

    column = pa.ExtensionArray.from_storage(Crafted(), pa.array([1, 2]))
    path = tmp_path / "crafted.parquet"
    pq.write_table(pa.table({"trip_miles": column}), path)
    out = Gate(taxi, build_schema(taxi), workspace_factory(taxi)).process(path)
    assert not out.accepted
    assert [a.kind for a in out.report.anomalies] == ["MALFORMED_FILE"]
    assert "CVE-2023-47248" in out.report.anomalies[0].description
    assert not marker.exists()


def test_a_parquet_file_without_a_suffix_is_read_as_parquet(taxi, workspace_factory, tmp_path):
    """KFP Dataset artifacts and exports like `part-0` carry no suffix: the content decides."""
    from mlplatform.data.ingest import detect_format

    frame = pd.read_csv(source_of(taxi)).head(500)
    bare = tmp_path / "part-0"
    frame.to_parquet(bare, index=False)
    assert detect_format(bare) == "parquet"
    rec, created = ingest(bare, taxi, workspace_factory(taxi), "v1")
    assert created and rec.rows == 500
