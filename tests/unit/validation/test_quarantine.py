"""Operators inspect and release quarantined batches; nothing is lost along the way."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest

from mlplatform.data.catalogue import BatchStatus
from mlplatform.spec import Alerts
from mlplatform.validation.quarantine import BatchRejected, Gate
from mlplatform.validation.schema import build_schema

from ...conftest import source_of


@pytest.fixture
def unseen_payment(taxi, tmp_path):
    df = pd.read_csv(source_of(taxi), dtype={"payment_type": str, "company": str})
    df.loc[:9, "payment_type"] = "Crypto"
    p = tmp_path / "crypto.csv"
    df.to_csv(p, index=False)
    return p


def test_release_after_spec_fix(taxi, workspace_factory, unseen_payment):
    ws = workspace_factory(taxi)
    out = Gate(taxi, build_schema(taxi), ws).process(unseen_payment)
    assert out.record.status is BatchStatus.QUARANTINED
    # Still failing with the old schema: release refused, batch stays quarantined.
    with pytest.raises(BatchRejected, match="payment_type"):
        Gate(taxi, build_schema(taxi), ws).release(out.record.short_id, "looks fine")
    # The operator adds the new category to the spec; the batch now passes and is released.
    col = taxi.column("payment_type")
    fixed_col = col.model_copy(update={"categories": (*col.categories, "Crypto")})
    fixed = taxi.model_copy(
        update={"columns": tuple(fixed_col if c.name == col.name else c for c in taxi.columns)}
    )
    released = Gate(fixed, build_schema(fixed), ws).release(out.record.short_id, "new category")
    assert released.record.status is BatchStatus.RELEASED and released.accepted
    qdir = ws.quarantine / out.record.batch_id
    assert (qdir / "batch.csv").read_bytes() == unseen_payment.read_bytes()
    record = json.loads((qdir / "releases.jsonl").read_text().splitlines()[-1])
    assert record["how"] == "revalidated" and record["reason"] == "new category"


def test_release_with_corrected_file(taxi, workspace_factory, unseen_payment):
    ws = workspace_factory(taxi)
    gate = Gate(taxi, build_schema(taxi), ws)
    bad = gate.process(unseen_payment)
    out = gate.release(bad.record.batch_id, "re-exported", replacement=source_of(taxi))
    assert out.accepted and out.record.derived_from == bad.record.batch_id
    assert gate.cat.get(bad.record.batch_id).status is BatchStatus.SUPERSEDED
    assert (ws.quarantine / bad.record.batch_id / "batch.csv").exists()  # still kept


def test_release_needs_reason_and_quarantined_batch(taxi, workspace_factory, unseen_payment):
    ws = workspace_factory(taxi)
    gate = Gate(taxi, build_schema(taxi), ws)
    bad = gate.process(unseen_payment)
    with pytest.raises(ValueError, match="reason"):
        gate.release(bad.record.batch_id, "  ", force=True)
    good = gate.process(source_of(taxi))
    with pytest.raises(ValueError, match="not quarantined"):
        gate.release(good.record.batch_id, "why not", force=True)
    forced = gate.release(bad.record.batch_id, "approved by data owner", force=True)
    assert forced.accepted


def test_webhook_alert_delivered(taxi, workspace_factory, unseen_payment):
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/alerts"
        spec = taxi.model_copy(update={"alerts": Alerts(sink="webhook", url=url)})
        Gate(spec, build_schema(spec), workspace_factory(spec)).process(unseen_payment)
    finally:
        server.shutdown()
    assert received and received[0]["kind"] == "batch_quarantined"
    assert "payment_type" in received[0]["features"]


@pytest.mark.heavy
def test_cli_quarantine_round_trip(tmp_path, unseen_payment, repo_root):
    home = tmp_path / "home"

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "mlplatform.cli", *args, "-u", "taxi", "--home", str(home)],
            capture_output=True,
            text=True,
            cwd=repo_root,
        )

    ing = cli("ingest", str(unseen_payment))
    assert ing.returncode == 3
    assert "payment_type" in ing.stderr and "what to do" in ing.stderr
    listed = cli("quarantine", "list")
    batch = listed.stdout.split()[0]
    shown = cli("quarantine", "show", batch)
    assert "CATEGORY" in shown.stdout and "Crypto" in shown.stdout
    refused = cli("quarantine", "release", batch, "--reason", "try")
    assert refused.returncode == 3 and "still failing" in refused.stderr
    missing = cli("quarantine", "show", "ffffffff")
    assert missing.returncode == 2 and "no batch" in missing.stderr
