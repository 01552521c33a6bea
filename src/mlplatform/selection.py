"""Pick the candidate that best serves the business: quality subject to serving constraints.

The report explains the choice with the numbers: quality on the chosen slice, single-row p99
through the packaged pyfunc, artifact size, fairness, and ratios to the fastest candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlplatform.spec import UseCase


@dataclass(frozen=True)
class Candidate:
    family: str
    run_id: str
    model_uri: str
    quality: float  # the selection metric on the selection slice (higher is better)
    auc_overall: float
    p50_ms: float
    p99_ms: float
    rows_per_s: float
    artifact_mb: float
    fairness: str = "pass"  # the fairness gate's verdict: pass | inconclusive | fail
    fairness_failures: tuple[str, ...] = ()

    @property
    def fairness_passed(self) -> bool:
        return self.fairness == "pass"


@dataclass
class Selection:
    winner: Candidate | None
    candidates: list[Candidate]
    reasons: dict[str, str] = field(default_factory=dict)  # family -> why it lost / won

    def markdown(self, spec: UseCase, plot_name: str | None = None) -> str:
        budget = spec.constraints.latency_p99_ms
        fastest = min(c.p99_ms for c in self.candidates)
        metric = f"{spec.selection.metric} ({spec.selection.slice})"
        lines = [
            f"# Model selection — {spec.name}",
            "",
            f"Policy: best {metric} among candidates with single-row p99 <= {budget} ms, "
            f"artifact <= {spec.constraints.max_artifact_mb} MB and a fairness gate that did "
            "not FAIL; a PASS is preferred to an INCONCLUSIVE.",
            "",
            f"| family | {metric} | AUC overall | p50 ms | p99 ms | p99 / fastest | rows/s "
            "(batch) | size MB | fairness | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in sorted(self.candidates, key=lambda c: -c.quality):
            lines.append(
                f"| {c.family} | {c.quality:.4f} | {c.auc_overall:.4f} | {c.p50_ms:.2f} | "
                f"{c.p99_ms:.2f} | {c.p99_ms / fastest:.1f}x | {c.rows_per_s:,.0f} | "
                f"{c.artifact_mb:.2f} | {c.fairness.upper()} | "
                f"{self.reasons.get(c.family, '')} |"
            )
        lines.append("")
        if self.winner is None:
            lines.append("**No candidate satisfies the constraints**; nothing is registered.")
        else:
            lines.append(f"**Winner: {self.winner.family}** — {self.reasons[self.winner.family]}")
        if plot_name:
            lines += ["", f"![quality vs latency]({plot_name})"]
        return "\n".join(lines) + "\n"


def select(candidates: list[Candidate], spec: UseCase) -> Selection:
    budget = spec.constraints.latency_p99_ms
    sel = Selection(winner=None, candidates=candidates)
    eligible = []
    for c in candidates:
        problems = []  # every reason, not just the first: a user fixes them all at once
        if c.p99_ms > budget:
            problems.append(f"p99 {c.p99_ms:.2f} ms exceeds the {budget} ms budget")
        if c.artifact_mb > spec.constraints.max_artifact_mb:
            problems.append(f"artifact {c.artifact_mb:.1f} MB exceeds the size limit")
        if c.fairness == "fail":
            problems.append("fairness gate FAIL: " + "; ".join(c.fairness_failures))
        if problems:
            sel.reasons[c.family] = "; ".join(problems)
        else:
            eligible.append(c)
    if not eligible:
        return sel
    # A fairness PASS comes before an INCONCLUSIVE: a version shown to be fair needs no one
    # to accept a risk, whatever an unproven rival gains in quality.
    passing = [c for c in eligible if c.fairness == "pass"]
    pool = passing or eligible
    best = max(pool, key=lambda c: (c.quality, -c.p99_ms))
    sel.winner = best
    for c in eligible:
        if c is best:
            continue
        if c not in pool:
            sel.reasons[c.family] = (
                f"within budget, but its fairness is INCONCLUSIVE and {best.family}'s is PASS"
            )
            continue
        sel.reasons[c.family] = (
            f"within budget but {best.quality - c.quality:.4f} behind on quality"
            if c.quality < best.quality
            else f"ties on quality; slower ({c.p99_ms:.2f} vs {best.p99_ms:.2f} ms)"
        )
    runner_up = [c for c in pool if c is not best]
    why = f"highest {spec.selection.metric} on the {spec.selection.slice} slice within budget"
    if runner_up:
        nxt = max(runner_up, key=lambda c: c.quality)
        why += (
            f" ({best.quality:.4f} vs {nxt.family} {nxt.quality:.4f}; "
            f"p99 {best.p99_ms:.2f} ms vs {nxt.p99_ms:.2f} ms)"
        )
    if best.fairness == "inconclusive":
        why += (
            "; fairness INCONCLUSIVE: it may be the challenger, and the champion only with "
            "the business owner's explicit acceptance"
        )
    sel.reasons[best.family] = why
    return sel


def pareto_plot(sel: Selection, spec: UseCase, path: Path) -> Path:
    """Quality against single-row p99 latency, with the budget drawn in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for c in sel.candidates:
        won = sel.winner is not None and c.family == sel.winner.family
        ax.scatter(c.p99_ms, c.quality, s=120 if won else 60, marker="*" if won else "o", zorder=3)
        ax.annotate(c.family, (c.p99_ms, c.quality), textcoords="offset points", xytext=(6, 4))
    ax.axvline(spec.constraints.latency_p99_ms, linestyle="--", color="grey")
    ax.text(
        spec.constraints.latency_p99_ms,
        ax.get_ylim()[0],
        " latency budget",
        rotation=90,
        va="bottom",
        color="grey",
    )
    ax.set_xscale("log")
    ax.set_xlabel("single-row p99 latency through the pyfunc (ms, log)")
    ax.set_ylabel(f"{spec.selection.metric} on {spec.selection.slice} slice")
    ax.set_title(f"{spec.name}: quality vs serving latency")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
