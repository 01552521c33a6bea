"""The scheduled monitoring's state: saved whole or not at all, and one judgement at a time."""

import pytest

from mlplatform.monitoring.triggers import TriggerState
from mlplatform.monitoring.watch import MonitoringBusy, WatchState, _exclusive


def test_state_round_trips_and_a_missing_file_is_a_fresh_start(tmp_path):
    path = tmp_path / "monitoring" / "watch.json"
    assert WatchState.load(path) == WatchState()
    state = WatchState(
        log_offsets={"requests-1.jsonl": 120}, labels_offset=7,
        triggers=TriggerState(drifted_streak=2, labels_since_training=30, quiet_left=1),
        pending=[{"usecase": "taxi", "window": "w", "reason": "drift", "message": "m"}],
        reference={"version": "3", "confidence": 0.8}, windows=4,
    )
    state.save(path)
    assert WatchState.load(path) == state
    assert not path.with_suffix(".tmp").exists()


def test_a_second_judgement_of_the_same_use_case_is_refused_while_one_runs(tmp_path):
    path = tmp_path / "watch.json"
    with _exclusive(path), pytest.raises(MonitoringBusy, match="one run at a time"), _exclusive(
        path
    ):
        pass
    with _exclusive(path):  # released when the first ends
        pass
