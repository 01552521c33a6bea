"""Replay a use case's history month by month as production traffic (`make simulate`).

Each month: the champion scores the month's rows (logged to the request log like the model
server does, request id = entity key), the labels of `label_delay` months ago arrive (label log
+ a labelled batch through the validation gate), drift / confidence / quality / KPI are
measured, and the trigger policy decides. A trigger retrains on the accepted batches, applies
the registry gate and a head-to-head on the newest period, then canaries the challenger on real
model servers behind the router; a promotion moves `champion`. An optional drift multiplies a
column by a factor from a given month on (an upstream unit change), in traffic and in the
labelled batches alike. Quarantined drifted batches are released by the replay in the role of
the operator who confirmed the change with the data owner (the reason is recorded); other
quarantined months stay out of training.

Scoring runs in process through the registered pyfunc (the artifact the servers load); the
canary runs on real servers. Aggregate features come from a Feast build over the whole
(drifted) file in a scratch workspace: what the online store would have served at each time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from mlplatform.monitoring.replay.history import Replay, ReplayConfig

__all__ = ["Replay", "ReplayConfig", "run_replay", "summarize"]


def run_replay(
    cfg: ReplayConfig, progress: Callable[[int, int], None] | None = None
) -> Replay:
    """Run the whole replay; writes timeline.json, events.json, summary.json, dashboard.html.
    `progress(windows done, windows in all)` is called after each month."""
    from mlplatform.monitoring.replay.cycle import MonitoringCycle
    from mlplatform.monitoring.replay.outcomes import summary_lines

    cycle = MonitoringCycle.start(cfg)
    replay = cycle.replay
    windows = cycle.months[cfg.initial_months :][: cfg.max_months]
    for done, month in enumerate(windows, 1):
        cycle.month(month)
        if progress is not None:
            progress(done, len(windows))
    out = cycle.out_dir
    (out / "timeline.json").write_text(json.dumps(replay.timeline, indent=2, default=str))
    (out / "events.json").write_text(json.dumps(replay.events, indent=2, default=str))
    from mlplatform.monitoring.dashboard import write_dashboard

    summary = summarize(cfg, replay)
    summary["seconds"] = replay.elapsed()
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    write_dashboard(replay, summary, out / "dashboard.html")
    for line in summary_lines(summary):
        print(line, flush=True)
    print(f"replay done in {summary['seconds']} s: {out / 'dashboard.html'}", flush=True)
    return replay


def summarize(cfg: ReplayConfig, replay: Replay) -> dict:
    """Detection delay, false triggers on stable months, retrainings, promotions, and the path
    from the injected drift to a promoted retrained model
    (mlplatform.monitoring.replay.outcomes)."""
    from mlplatform.monitoring.replay.outcomes import (
        ALARMS,
        confidence_note,
        drift_to_promotion,
        false_triggers,
    )

    drift_from = cfg.drift_from
    tl, events = replay.timeline, replay.events
    triggers = [e for e in events if e["kind"] == "trigger"]
    false, stable = false_triggers(tl, events, drift_from)
    detected = [
        t for t in triggers if drift_from and t["reason"] in ALARMS and t["month"] >= drift_from
    ]
    months = [r["month"] for r in tl]
    delay = None
    if detected and drift_from in months:
        delay = months.index(detected[0]["month"]) - months.index(drift_from)
    d2p = drift_to_promotion(tl, events, drift_from)
    return {
        "months": len(months),
        "drift_from": drift_from,
        "stable_windows": len(stable),
        "false_triggers": len(false),
        "false_trigger_rate": round(len(false) / len(stable), 4) if stable else None,
        "detection_delay_windows": delay,
        "triggers": [
            {k: t.get(k) for k in ("month", "reason", "held", "message")} for t in triggers
        ],
        "retrainings": sum(e["kind"] == "retrained" for e in events),
        "promotions": sum(e["kind"] == "promoted" for e in events),
        "promotion_delay_windows": d2p["windows"] if d2p else None,
        "drift_to_promotion": d2p,
        "confidence_note": confidence_note(tl, drift_from, cfg.policy.confidence_drop),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
    }
