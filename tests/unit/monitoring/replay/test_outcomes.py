"""The replay's summary from its records: false triggers on stable months, and the path from an
injected drift to a promoted retrained model (windows and wall seconds per step), or the step
that stopped each retraining."""

from __future__ import annotations

from mlplatform.monitoring.replay.outcomes import (
    confidence_note,
    drift_to_promotion,
    false_triggers,
    retrain_attempts,
    summary_lines,
)

MONTHS = ["2015-03", "2015-04", "2015-05", "2015-06", "2015-07", "2015-08", "2015-09"]
DRIFT = "2015-06"


def _timeline() -> list[dict]:
    return [
        {
            "month": m,
            "t_start_s": 100.0 * i,
            "champion": "1",
            "confidence": 0.80,
            "reference_confidence": 0.83,
            "auc": 0.92 if m < DRIFT else 0.66,
            "triggers": [],
        }
        for i, m in enumerate(MONTHS)
    ]


def _ev(month: str, kind: str, t: float, message: str = "", **kw) -> dict:
    return {"month": month, "kind": kind, "message": message or kind, "t_s": t, **kw}


def _events(canary: str = "promoted") -> list[dict]:
    return [
        _ev("2015-03", "retrained", 5.0, version="1", reasons=None),  # the first champion
        _ev("2015-04", "trigger", 110.0, reason="labels", held=""),
        _ev("2015-04", "retrained", 150.0, version="2", reasons=["labels"],
            registry_gate="auc on recent 0.7001 does not beat champion v1 (0.7100, on the "
            "same 800 held-out rows) by the required margin 0.002"),
        _ev("2015-04", "gate", 160.0, version="2", passed=False, registry_passed=False),
        _ev("2015-06", "trigger", 310.0, "fare drifted", reason="drift", held="cooldown"),
        _ev("2015-08", "trigger", 510.0, "fare drifted", reason="drift", held=""),
        _ev("2015-09", "retrained", 640.0, version="3", reasons=["drift"], registry_gate="ok",
            battery_load="passed: p99 3.1 ms"),
        _ev("2015-09", "gate", 650.0, version="3", passed=True, registry_passed=True),
        _ev("2015-09", "canary", 690.0, f"{canary}: 3 rounds", version="3"),
    ] + ([_ev("2015-09", "promoted", 691.0, "v3 is the champion", version="3")]
         if canary == "promoted" else [])  # fmt: skip


def test_drift_to_promotion_steps_in_windows_and_seconds():
    d2p = drift_to_promotion(_timeline(), _events(), DRIFT)
    assert d2p["promoted"] and d2p["windows"] == 3 and d2p["seconds"] == 391.0
    steps = {s["step"]: (s["month"], s["windows"], s["seconds"]) for s in d2p["steps"]}
    assert list(steps) == [
        "first drifted window",
        "first detection",
        "trigger starts a retraining",
        "retrain finished",
        "gate",
        "canary",
        "promotion",
    ]
    assert steps["first detection"] == ("2015-06", 0, 10.0)  # held by the cooldown, yet seen
    assert steps["trigger starts a retraining"] == ("2015-08", 2, 210.0)
    assert steps["retrain finished"] == ("2015-09", 3, 340.0)
    # The labels retraining before the drift is not part of the drift's path.
    assert [a["version"] for a in d2p["attempts"]] == ["3"]
    lines = summary_lines(
        {
            "months": 7,
            "stable_windows": 3,
            "false_triggers": 0,
            "false_trigger_rate": 0.0,
            "retrainings": 2,
            "promotions": 1,
            "drift_to_promotion": d2p,
        }
    )
    assert "promoted retrained model after 3 window(s), 391.0 s" in "\n".join(lines)


def test_a_retraining_that_stops_names_the_step():
    d2p = drift_to_promotion(_timeline(), _events(canary="rolled_back"), DRIFT)
    assert not d2p["promoted"] and d2p["windows"] is None
    assert d2p["attempts"][0]["stopped_at"] == "canary: rolled_back: 3 rounds"
    attempts = retrain_attempts(_events())
    assert [a["version"] for a in attempts] == ["2", "3"]
    assert attempts[0]["stopped_at"].startswith("champion-challenger gate: auc on recent")
    refused = [
        _ev("2015-09", "retrained", 1.0, version="4", reasons=["drift"],
            registry_gate="battery failed (load: failed: p99 15.7 ms; budget 10.0 ms)"),
        _ev("2015-09", "gate", 2.0, version="4", passed=False, registry_passed=False),
    ]  # fmt: skip
    assert "battery failed (load" in retrain_attempts(refused)[0]["stopped_at"]


def test_false_triggers_count_alarms_on_stable_months_held_or_not():
    events = _events() + [
        _ev("2015-05", "trigger", 1.0, reason="confidence", held="cooldown"),
        _ev("2015-03", "trigger", 1.0, reason="labels", held=""),  # scheduled, never false
    ]
    false, stable = false_triggers(_timeline(), events, DRIFT)
    assert stable == ["2015-03", "2015-04", "2015-05"]
    assert [(e["month"], e["reason"]) for e in false] == [("2015-05", "confidence")]
    # Without an injected drift every window is stable.
    assert len(false_triggers(_timeline(), events, None)[1]) == len(MONTHS)
    assert drift_to_promotion(_timeline(), events, None) is None


def test_confidence_note_gives_the_measured_numbers():
    note = confidence_note(_timeline(), DRIFT, 0.25)
    assert note.startswith("confidence trigger did not fire")
    assert "0.800" in note and "0.83" in note and "below 0.62" in note
    assert "0.920" in note and "0.660" in note
