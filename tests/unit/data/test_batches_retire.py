"""An operator takes a batch out of use and brings it back; nothing is deleted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlplatform.data.catalogue import BatchStatus
from mlplatform.data.corpus import split_clean
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.reference import reference_profile
from mlplatform.validation.schema import build_schema

from ...conftest import source_of


@pytest.mark.heavy
def test_retire_excludes_a_batch_and_restore_undoes_it(taxi, workspace_factory, tmp_path):
    from mlplatform.features.store import FeatureRepo

    a, b = split_clean(source_of(taxi), taxi, tmp_path / "parts", (0.5, 0.5))
    ws = workspace_factory(taxi)
    gate = Gate(taxi, build_schema(taxi), ws)
    first, second = gate.process(a), gate.process(b)
    assert first.accepted and second.accepted
    with pytest.raises(ValueError, match="reason"):
        gate.cat.retire(second.record.short_id, " ")
    rec = gate.cat.retire(second.record.short_id, "string labels, re-exported")
    assert rec.status is BatchStatus.RETIRED
    assert [r.batch_id for r in gate.cat.usable(taxi.name)] == [first.record.batch_id]
    assert reference_profile(taxi, ws).rows == first.record.rows
    _, frames = FeatureRepo(taxi, ws)._usable_frames()
    assert [len(f) for f in frames] == [first.record.rows]
    assert (ws.batch_dir(rec.batch_id) / "batch.csv").exists()  # the bytes stay
    again = gate.process(b)  # the same bytes sent again: still retired, not re-judged
    assert not again.accepted and again.record.status is BatchStatus.RETIRED
    restored = gate.cat.restore(rec.batch_id, "labels were right after all")
    assert restored.status is BatchStatus.ACCEPTED
    events = [e["event"] for e in gate.cat.events(rec.batch_id)]
    assert events == ["ingested", "accepted", "retired", "accepted"]
    with pytest.raises(ValueError, match="not retired"):
        gate.cat.restore(rec.batch_id, "twice")


@pytest.mark.heavy
def test_cli_retire_and_restore(tmp_path, repo_root, taxi):
    home = tmp_path / "home"
    a, _ = split_clean(source_of(taxi), taxi, tmp_path / "parts", (0.1, 0.9))
    Gate(taxi, build_schema(taxi), _ws(home, taxi)).process(a)

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "mlplatform.cli", "batches", *args, "-u", "taxi",
             "--home", str(home)],
            capture_output=True, text=True, cwd=repo_root,
        )  # fmt: skip

    batch = cli("list").stdout.split()[0]
    out = cli("retire", batch, "--reason", "bad export")
    assert out.returncode == 0 and "retired" in out.stdout
    assert "retired" in cli("list").stdout
    missing = cli("retire", "ffffffff", "--reason", "x")
    assert missing.returncode != 0 and "no batch" in missing.stderr
    assert cli("restore", batch, "--reason", "fine").returncode == 0
    assert "accepted" in cli("list").stdout


def _ws(home, spec):
    from mlplatform.workspace import Workspace

    return Workspace.for_usecase(home, spec.name)
