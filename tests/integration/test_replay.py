"""The taxi replay end to end (slow): months of traffic, delayed labels, an injected fare x10
from 2015-06, detection, retraining, gate, canary on real servers and promotion.

Stated bounds (behaviour, counted in replay windows = months):
- no drift or confidence trigger fires on the stable months before the injection (false
  triggers counted over at least 15 windows and printed with their rate);
- the drift is detected in the first drifted window (delay 0, at most 1 allowed);
- a model retrained because of the drift is promoted within 6 windows of the injection, after
  its registry gate, head-to-head and canary, each step in order (windows and wall seconds are
  printed; wall seconds depend on the machine and are not asserted);
- the whole replay finishes within 40 minutes (a guard against a hang, not a speed test);
- a replay without injected drift raises no drift trigger in any of its 36 windows, and its
  triggers of any kind, all counted as false, stay at or under one window in twenty (count
  and rate printed). Measured 2026-12-01: one, a confidence trigger in 2016-06 (66 trips,
  mean confidence 0.534 vs a reference 0.803, payment_type L-inf 0.30 from training, labelled
  AUC 0.959), a rate of 1/36 = 0.028. The inputs really moved that month, but the model did
  not need retraining, so it counts as false (ADR 0013).

Every retraining's battery measures its load p99 on the model server's request path (ADR
0022), so a busy machine no longer refuses it on latency that serving does not pay: measured
2026-12-01, the drift's first retraining was promoted 3 windows after the injection, battery
load p99 0.99-4.28 ms against the 10 ms budget."""

from __future__ import annotations

import json
import time

import pytest

from mlplatform.monitoring.replay.driver import ReplayConfig, run_replay
from mlplatform.monitoring.triggers import TriggerLog, trigger_log_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BOUND_S = 40 * 60
PROMOTION_WINDOWS = 6
MAX_FALSE_TRIGGER_RATE = 0.05  # without injected drift: at most one window in twenty


def test_replay_detects_retrains_and_promotes(tmp_path):
    cfg = ReplayConfig(home=tmp_path / "home", drift_from="2015-06")
    t0 = time.perf_counter()
    replay = run_replay(cfg)
    elapsed = time.perf_counter() - t0
    out = tmp_path / "home" / "taxi" / "monitoring" / "replay"
    summary = json.loads((out / "summary.json").read_text())
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    # Stable months: no alarm, and the rate rests on enough windows.
    print(
        f"false triggers: {summary['false_triggers']} in {summary['stable_windows']} stable "
        f"windows (rate {summary['false_trigger_rate']})"
    )
    assert summary["stable_windows"] >= 15
    assert summary["false_triggers"] == 0, summary["triggers"]
    assert summary["detection_delay_windows"] is not None, summary["triggers"]
    assert summary["detection_delay_windows"] <= 1
    html = (out / "dashboard.html").read_text()
    assert "data:image/png;base64," in html and "Drift to promotion" in html
    assert "confidence trigger" in summary["confidence_note"]  # why it did or did not fire
    assert elapsed < BOUND_S
    kinds = [e["kind"] for e in replay.events]
    for kind in ("deployed", "trigger", "retrained", "gate"):
        assert kind in kinds, kind
    d2p = summary["drift_to_promotion"]
    drift_attempts = [a for a in d2p["attempts"] if "drift" in a["reasons"]]
    assert drift_attempts, d2p  # the drift started a retraining
    assert d2p["promoted"], d2p["attempts"]
    assert d2p["windows"] <= PROMOTION_WINDOWS, d2p["steps"]
    steps = [s["step"] for s in d2p["steps"]]
    assert steps[-4:] == ["retrain finished", "gate", "canary", "promotion"], steps
    assert steps.index("first detection") < steps.index("retrain finished")
    windows = [s["windows"] for s in d2p["steps"]]
    seconds = [s["seconds"] for s in d2p["steps"]]
    assert windows == sorted(windows) and seconds == sorted(seconds)  # causal order
    promoted = next(a for a in d2p["attempts"] if a["stopped_at"] is None)
    assert "drift" in promoted["reasons"]
    assert "promoted" in html
    logged = TriggerLog(trigger_log_path(cfg.home, "taxi")).read()
    assert any(r["reason"] == "drift" and r.get("canary") == "promoted" for r in logged)


def test_replay_without_drift_raises_no_alarm(tmp_path):
    # No canary: label-count retrainings still run, gate and promote through governance; the
    # point here is the alarms, and the canary is covered by the test above.
    cfg = ReplayConfig(home=tmp_path / "home", drift_from=None, canary=False, evidently=False)
    replay = run_replay(cfg)
    summary = json.loads(
        (tmp_path / "home" / "taxi" / "monitoring" / "replay" / "summary.json").read_text()
    )
    print(
        f"false triggers without drift: {summary['false_triggers']} in "
        f"{summary['stable_windows']} windows (rate {summary['false_trigger_rate']}); "
        f"triggers: {summary['triggers']}"
    )
    assert summary["stable_windows"] == len(replay.timeline) >= 20
    # The drift trigger, the one an injected drift must fire, never fires without one.
    assert not [t for t in summary["triggers"] if t["reason"] == "drift"], summary["triggers"]
    # Every trigger without injected drift counts as false; the stated bound is one window in
    # twenty. Measured 2026-12-01: 1 of 36 (0.028), the 2016-06 confidence trigger.
    assert summary["false_trigger_rate"] <= MAX_FALSE_TRIGGER_RATE, summary["triggers"]
    assert summary["drift_to_promotion"] is None
