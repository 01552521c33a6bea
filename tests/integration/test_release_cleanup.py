"""The replay's canary release on real processes, when a model server cannot start: the error
names the process and its log, and no process of the release is left running."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from mlplatform.monitoring.replay.canary import canary_release
from mlplatform.release.local_stack import StackError

pytestmark = pytest.mark.integration


def _live_children() -> list[int]:
    """Processes whose parent is this test process (zombies excluded: they were waited for)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state, ppid = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue  # it ended while we looked
        if int(ppid) == me and state != "Z":
            found.append(int(entry))
    return found


def test_a_server_that_cannot_load_stops_the_whole_release(tmp_path):
    from mlflow import MlflowClient

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # registry_uri too: MLflow prefers a registry set earlier in the process to tracking's
    assert MlflowClient(tracking, registry_uri=tracking).search_registered_models() == []
    before = set(_live_children())
    traffic = pd.DataFrame({"request_id": ["r1"], "fare": [6.5]})
    with pytest.raises(StackError) as err:
        canary_release(
            "taxi", "taxi-classifier", "1", "2", tracking, traffic, tmp_path / "canary", print
        )
    message = str(err.value)
    assert message.startswith("champion exited with"), message
    log = Path(message.split("(log: ", 1)[1].split(")", 1)[0])
    assert log.parent == tmp_path / "canary" and log.exists()
    assert "taxi-classifier" in log.read_text()  # the server said what it could not load
    # The challenger and the router were started too; none of them outlives the failure.
    assert set(_live_children()) - before == set()
    assert {p.name.split("-")[0] for p in (tmp_path / "canary").glob("*.log")} == {
        "champion",
        "challenger",
        "router",
    }
