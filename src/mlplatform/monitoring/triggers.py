"""Retraining triggers: when a window of served traffic says the model should be retrained.

Three reasons, each with its evidence kept in the trigger log (JSON lines under
`<home>/<usecase>/monitoring/triggers.jsonl`, shown by `mlplatform monitor triggers`):

- `drift`: a feature the spec gives a `retrain_drift` scores above it (see
  mlplatform.monitoring.drift) in `drift_windows` consecutive windows;
- `confidence`: the window's mean confidence |2p - 1| fell by more than `confidence_drop`
  (relative) below the reference measured on the training data's held-out rows;
- `labels`: `new_labels` labelled rows arrived since the model was trained.

After a retraining, triggers of the next `cooldown_windows` windows are still raised and logged
(detection stays visible) but `held`: they start no retraining, so one shift does not start a
retraining per window while the new model is trained, gated and canaried.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from mlplatform.data.catalogue import now_iso
from mlplatform.data.drift import FeatureDrift
from mlplatform.workspace import Workspace

REASONS = ("drift", "confidence", "labels")


@dataclass(frozen=True)
class TriggerPolicy:
    drift_windows: int = 1  # consecutive drifted windows before `drift` fires
    min_rows: int = 100  # a smaller window is too noisy to judge
    confidence_drop: float = 0.25  # relative to the reference confidence
    new_labels: int = 5000  # labelled rows since the last training
    cooldown_windows: int = 3

    def __post_init__(self) -> None:
        if self.drift_windows < 1 or self.min_rows < 1 or self.new_labels < 1:
            raise ValueError("drift_windows, min_rows and new_labels must be >= 1")
        if not 0 < self.confidence_drop < 1:
            raise ValueError("confidence_drop must be in (0, 1)")


@dataclass(frozen=True)
class Trigger:
    usecase: str
    window: str
    reason: str  # one of REASONS
    message: str
    evidence: dict = field(default_factory=dict)
    at: str = field(default_factory=now_iso)
    held: str = ""  # why it starts no retraining ("" = it does)


@dataclass
class TriggerState:
    """What the policy remembers between windows."""

    drifted_streak: int = 0
    labels_since_training: int = 0
    quiet_left: int = 0


def evaluate_window(
    policy: TriggerPolicy,
    state: TriggerState,
    usecase: str,
    window: str,
    rows: int,
    drift: Sequence[FeatureDrift],
    confidence: float | None,
    reference_confidence: float | None,
    new_labels: int = 0,
) -> list[Trigger]:
    """The triggers one window fires (updates `state`); `held` while cooling down."""
    state.labels_since_training += new_labels
    drifted = [d for d in drift if d.triggers and d.drifted]
    if rows >= policy.min_rows:  # a smaller window says nothing either way: the streak stays
        state.drifted_streak = state.drifted_streak + 1 if drifted else 0
    fired: list[Trigger] = []
    if drifted and rows >= policy.min_rows and state.drifted_streak >= policy.drift_windows:
        worst = max(drifted, key=lambda d: d.score / d.threshold)
        fired.append(
            Trigger(
                usecase,
                window,
                "drift",
                f"{', '.join(d.feature for d in drifted)} drifted: {worst.feature} "
                f"{worst.measure} {worst.score:.3f} > {worst.threshold} for "
                f"{state.drifted_streak} window(s)",
                {"rows": rows, "features": [asdict(d) for d in drifted]},
            )
        )
    if (
        rows >= policy.min_rows
        and confidence is not None
        and reference_confidence
        and confidence < reference_confidence * (1 - policy.confidence_drop)
    ):
        fired.append(
            Trigger(
                usecase,
                window,
                "confidence",
                f"mean confidence {confidence:.3f} is "
                f"{1 - confidence / reference_confidence:.0%} below the reference "
                f"{reference_confidence:.3f} (limit {policy.confidence_drop:.0%})",
                {"rows": rows, "confidence": confidence, "reference": reference_confidence},
            )
        )
    if state.labels_since_training >= policy.new_labels:
        fired.append(
            Trigger(
                usecase,
                window,
                "labels",
                f"{state.labels_since_training} new labelled rows since the last training "
                f"(>= {policy.new_labels})",
                {"labels": state.labels_since_training},
            )
        )
    if state.quiet_left > 0:
        why = f"cooldown: {state.quiet_left} window(s) left after the last retraining"
        state.quiet_left -= 1
        return [replace(t, held=why) for t in fired]
    return fired


def retrained(policy: TriggerPolicy, state: TriggerState) -> None:
    """Reset after a retraining: the labels are used, and the policy cools down."""
    state.labels_since_training = 0
    state.drifted_streak = 0
    state.quiet_left = policy.cooldown_windows


def trigger_log_path(home: Path, usecase: str) -> Path:
    return Workspace.locate(home, usecase).monitoring / "triggers.jsonl"


class TriggerLog:
    """Triggers and what came of them (retraining, gate, canary), one JSON object a line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, trigger: Trigger, **outcome) -> dict:
        record = {**asdict(trigger), **outcome}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
        return record

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line after a crash
        return out
