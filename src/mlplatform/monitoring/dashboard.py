"""The replay's dashboard: one HTML page, four pillars over time (matplotlib, inlined PNGs).

Infrastructure (scoring cost per row, canary rounds), data (drift per feature against its
threshold), model (AUC on delayed labels, confidence, calibration) and business (the spec's
KPI), with triggers, promotions and the injected drift marked on every panel.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _marks(ax, months: list[str], replay, summary: dict) -> None:
    pos = {m: i for i, m in enumerate(months)}
    if summary.get("drift_from") in pos:
        ax.axvline(
            pos[summary["drift_from"]], color="black", ls=":", lw=1.2, label="drift injected"
        )
    # A held trigger (cooldown) is drawn faint: it was raised and logged but started nothing.
    marks = (
        ("trigger", lambda e: not e.get("held"), "tab:red", 0.6, "trigger"),
        ("trigger", lambda e: bool(e.get("held")), "tab:red", 0.15, "trigger (held)"),
        ("promoted", lambda e: True, "tab:green", 0.7, "promoted"),
    )
    for kind, keep, color, alpha, label in marks:
        xs = sorted(
            {
                pos[e["month"]]
                for e in replay.events
                if e["kind"] == kind and e["month"] in pos and keep(e)
            }
        )
        for j, x in enumerate(xs):
            ax.axvline(x, color=color, alpha=alpha, lw=1, label=label if j == 0 else None)


def write_dashboard(replay, summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = replay.timeline
    months = [r["month"] for r in tl]
    x = list(range(len(months)))
    fig, axes = plt.subplots(4, 1, figsize=(11, 13), sharex=True)
    ax = axes[0]
    ax.plot(x, [r["score_ms_per_row"] for r in tl], marker=".", label="scoring ms / row")
    ax.set_title("Infrastructure: scoring cost of the champion per row")
    ax.set_ylabel("ms")
    ax = axes[1]
    # Old timelines may lack the key; features that can trigger are drawn bold.
    thresholds = tl[-1].get("drift_thresholds", {}) if tl else {}
    for feature in tl[0]["drift"] if tl else {}:
        ys = [r["drift"].get(feature) for r in tl]
        ax.plot(x, ys, marker=".", lw=2 if feature in thresholds else 0.7, label=feature)
    for t in sorted(set(thresholds.values())):
        names = ", ".join(f for f, v in thresholds.items() if v == t)
        ax.axhline(t, color="grey", ls="--", lw=1, label=f"spec retrain_drift ({names})")
    ax.set_title("Data: drift of served features vs training (JS / L-inf)")
    ax.set_ylim(0, 1)
    ax = axes[2]
    ax.plot(x, [r["auc"] for r in tl], marker=".", label="AUC (delayed labels)")
    ax.plot(x, [r["accuracy"] for r in tl], marker=".", label="accuracy")
    ax.plot(x, [r["confidence"] for r in tl], marker=".", label="mean confidence |2p-1|")
    ax.plot(x, [r["ece"] for r in tl], marker=".", label="calibration error")
    ax.set_title("Model: quality on labelled traffic, confidence, calibration")
    ax = axes[3]
    ax.plot(x, [r["kpi"] for r in tl], marker=".", color="tab:purple", label="KPI")
    ax.set_title("Business: the spec's KPI on labelled traffic")
    for a in axes:
        _marks(a, months, replay, summary)
        a.legend(fontsize=7, loc="upper left", ncol=3)
        a.grid(alpha=0.3)
    axes[-1].set_xticks(x[::3], months[::3], rotation=45, fontsize=8)
    img = _png(fig)
    plt.close(fig)
    rows = "".join(
        f"<tr><td>{html.escape(e['month'])}</td><td>{html.escape(e['kind'])}</td>"
        f"<td>{html.escape(str(e['message']))}</td></tr>"
        for e in replay.events
    )
    facts = "".join(
        f"<li>{html.escape(k)}: {html.escape(str(v))}</li>"
        for k, v in summary.items()
        if not isinstance(v, dict | list) and k != "confidence_note"  # shown with the drift
    )
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>mlplatform replay</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 8px;vertical-align:top}"
        "tr:nth-child(even){background:#f4f4f4}</style></head><body>"
        f"<h1>Replay of {html.escape(str(summary['config']['usecase']))}</h1><ul>{facts}</ul>"
        f"{_drift_to_promotion(summary)}"
        f"<img src='data:image/png;base64,{img}'/>"
        f"<h2>Events</h2><table><tr><th>month</th><th>event</th><th>detail</th></tr>{rows}"
        "</table></body></html>"
    )
    return path


def _drift_to_promotion(summary: dict) -> str:
    """The injected drift's path to a promoted retrained model, step by step."""
    d2p = summary.get("drift_to_promotion")
    if not d2p:
        return ""
    if d2p["promoted"]:
        head = (
            f"promoted {d2p['windows']} window(s) and {d2p['seconds']} s of replay wall time "
            f"after the drift began ({d2p['drift_from']})"
        )
    else:
        head = f"no retrained model was promoted after the drift of {d2p['drift_from']}"
    rows = "".join(
        f"<tr><td>{html.escape(s['step'])}</td><td>{html.escape(s['month'])}</td>"
        f"<td>+{s['windows']}</td><td>{s['seconds']}</td><td>{html.escape(s['detail'])}</td></tr>"
        for s in d2p["steps"]
    )
    stops = "".join(
        f"<li>v{html.escape(str(a['version']))} ({html.escape(a['month'])}, "
        f"{html.escape(', '.join(a['reasons']))}): stopped at {html.escape(a['stopped_at'])}</li>"
        for a in d2p["attempts"]
        if a["stopped_at"]
    )
    note = summary.get("confidence_note")
    return (
        f"<h2>Drift to promotion</h2><p>{html.escape(head)}</p>"
        "<table><tr><th>step</th><th>month</th><th>windows</th><th>wall s</th><th>detail</th>"
        f"</tr>{rows}</table>"
        + (f"<p>Retrainings that did not reach production:</p><ul>{stops}</ul>" if stops else "")
        + (f"<p><b>Confidence trigger.</b> {html.escape(note)}</p>" if note else "")
    )
