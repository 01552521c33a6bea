"""What a replay shows, from its timeline and events: false triggers on stable months, and for an
injected drift the path from the first drifted window to a promoted retrained model.

Pure functions over the replay's records (no MLflow, no servers), so the summary can be
recomputed from `timeline.json` and `events.json` and is unit-tested on small records.

Times are given twice: in replay windows (months of the taxi timeline, what a production
system would wait) and in wall seconds of the replay itself, measured from the start of the
first drifted window (what this machine spent: scoring, drift, retraining, battery, gate,
canary). Wall seconds depend on the machine's load and are reported, never asserted.
"""

from __future__ import annotations

from collections.abc import Sequence

ALARMS = ("drift", "confidence")  # label-count triggers are scheduled, never false
_AFTER_RETRAIN = ("gate", "canary", "promoted", "promotion refused")


def _index(timeline: Sequence[dict]) -> dict[str, int]:
    return {r["month"]: i for i, r in enumerate(timeline)}


def false_triggers(timeline: Sequence[dict], events: Sequence[dict], drift_from: str | None):
    """(alarm triggers on stable months, stable windows): held triggers count too, since they
    are raised and logged even when a cooldown keeps them from starting a retraining."""
    stable = [r["month"] for r in timeline if not drift_from or r["month"] < drift_from]
    false = [
        e
        for e in events
        if e["kind"] == "trigger" and e.get("reason") in ALARMS and e["month"] in stable
    ]
    return false, stable


def retrain_attempts(events: Sequence[dict], since: str | None = None) -> list[dict]:
    """Each retraining (from `since` on) with what came of it: registry gate, head-to-head,
    canary, promotion; `stopped_at` names the step that kept it from production."""
    attempts: list[dict] = []
    for e in events:
        if e["kind"] == "retrained" and e.get("reasons") is not None:
            if since is None or e["month"] >= since:
                attempts.append({"retrained": e, "version": e.get("version")})
            continue
        if e["kind"] in _AFTER_RETRAIN and attempts:
            last = attempts[-1]
            if e.get("version") == last["version"] and e["kind"] not in last:
                last[e["kind"]] = e
    for a in attempts:
        a["stopped_at"] = _stopped_at(a)
    return attempts


def _stopped_at(a: dict) -> str | None:
    if "promoted" in a:
        return None
    gate = a.get("gate")
    if gate is None:
        return "not gated (the replay ended)"
    if not gate.get("passed", gate.get("registry_passed", True)):
        return f"champion-challenger gate: {a['retrained'].get('registry_gate', '')}"
    canary = a.get("canary")
    if canary is not None and not canary["message"].startswith("promoted"):
        return f"canary: {canary['message']}"
    if "promotion refused" in a:
        return f"governance: {a['promotion refused']['message']}"
    return "no canary result"


def drift_to_promotion(timeline: Sequence[dict], events: Sequence[dict], drift_from: str | None):
    """Windows and wall seconds from the first drifted window to each step, up to the first
    promotion of a retrained model; None without an injected drift."""
    if not drift_from:
        return None
    pos = _index(timeline)
    start = next((r for r in timeline if r["month"] >= drift_from), None)
    if start is None:
        return {"drift_from": drift_from, "promoted": False, "steps": [], "attempts": []}
    i0, t0 = pos[start["month"]], start.get("t_start_s")

    def at(name: str, e: dict, detail: str) -> dict:
        secs = None if t0 is None or e.get("t_s") is None else round(e["t_s"] - t0, 1)
        return {
            "step": name,
            "month": e["month"],
            "windows": pos[e["month"]] - i0,
            "seconds": secs,
            "detail": detail,
        }

    after = [e for e in events if e["month"] in pos and pos[e["month"]] >= i0]
    steps = [at("first drifted window", {"month": start["month"], "t_s": t0}, drift_from)]
    alarms = [e for e in after if e["kind"] == "trigger" and e.get("reason") in ALARMS]
    if alarms:
        steps.append(at("first detection", alarms[0], alarms[0]["message"]))
        acting = [e for e in alarms if not e.get("held")]
        if acting:
            steps.append(at("trigger starts a retraining", acting[0], acting[0]["message"]))
    attempts = retrain_attempts(after)
    chosen = next((a for a in attempts if a["stopped_at"] is None), None)
    chosen = chosen or (attempts[0] if attempts else None)
    if chosen:
        r = chosen["retrained"]
        steps.append(at("retrain finished", r, f"v{r['version']} ({', '.join(r['reasons'])})"))
        for kind, name in (("gate", "gate"), ("canary", "canary")):
            if kind in chosen:
                steps.append(at(name, chosen[kind], chosen[kind]["message"]))
        if "promoted" in chosen:
            steps.append(at("promotion", chosen["promoted"], chosen["promoted"]["message"]))
    promoted = bool(chosen and chosen["stopped_at"] is None)
    last = steps[-1] if promoted else None
    return {
        "drift_from": drift_from,
        "promoted": promoted,
        "windows": last["windows"] if last else None,
        "seconds": last["seconds"] if last else None,
        "steps": steps,
        "attempts": [
            {
                "month": a["retrained"]["month"],
                "version": a["version"],
                "reasons": a["retrained"]["reasons"],
                "battery_load": a["retrained"].get("battery_load"),
                "stopped_at": a["stopped_at"],
            }
            for a in attempts
        ],
    }


def confidence_note(timeline: Sequence[dict], drift_from: str | None, drop: float) -> str | None:
    """Why the confidence trigger did (not) fire on the drift, from the measured numbers."""
    if not drift_from:
        return None
    before = [r for r in timeline if r["month"] < drift_from]
    drifted = [r for r in timeline if r["month"] >= drift_from]
    if not drifted or drifted[0].get("reference_confidence") is None:
        return None
    champion = drifted[0]["champion"]
    same = [r for r in drifted if r["champion"] == champion]  # until a new model serves
    ref = same[0]["reference_confidence"]
    low = min(r["confidence"] for r in same)
    limit = ref * (1 - drop)
    fired = any("confidence" in r.get("triggers", []) for r in same)

    def auc(rows: Sequence[dict]) -> str:
        vals = [r["auc"] for r in rows if r.get("auc") is not None]
        return f"{sum(vals) / len(vals):.3f}" if vals else "n/a"

    def mean_conf(rows: Sequence[dict]) -> str:
        return f"{sum(r['confidence'] for r in rows) / len(rows):.3f}" if rows else "n/a"

    verdict = "fired" if fired else "did not fire"
    return (
        f"confidence trigger {verdict}: while v{champion} served the drifted windows its mean "
        f"confidence |2p-1| was {mean_conf(same)} on average and at least {low:.3f} (last 6 "
        f"stable windows: {mean_conf(before[-6:])}), against a reference {ref:.3f}; it fires "
        f"below {limit:.3f} ({drop:.0%} under). Its mean AUC on delayed labels went from "
        f"{auc(before[-6:])} (last 6 stable windows) to {auc(same[1:])} (drifted windows with "
        "labels): the model stayed as sure of its answers while they got worse. Confidence "
        "sees inputs that push predictions toward 0.5; this change moved predictions without "
        "making them less extreme, so the input drift and the labelled quality are the "
        "signals that saw it."
    )


def summary_lines(summary: dict) -> list[str]:
    """The replay's summary as printed at the end of `make simulate`."""
    lines = [
        f"{summary['months']} windows, {summary['stable_windows']} stable: "
        f"{summary['false_triggers']} false triggers (rate {summary['false_trigger_rate']})",
        f"retrainings {summary['retrainings']}, promotions {summary['promotions']}",
    ]
    d2p = summary.get("drift_to_promotion")
    if d2p:
        if d2p["promoted"]:
            lines.append(
                f"drift from {d2p['drift_from']} -> promoted retrained model after "
                f"{d2p['windows']} window(s), {d2p['seconds']} s of replay wall time"
            )
        else:
            lines.append(f"drift from {d2p['drift_from']}: no retrained model was promoted")
        for s in d2p["steps"]:
            lines.append(
                f"  +{s['windows']} window(s) {s['seconds']} s  {s['step']} [{s['month']}]: "
                f"{s['detail']}"
            )
        for a in d2p["attempts"]:
            if a["stopped_at"]:
                lines.append(f"  v{a['version']} [{a['month']}] stopped at {a['stopped_at']}")
    if summary.get("confidence_note"):
        lines.append(summary["confidence_note"])
    return lines
