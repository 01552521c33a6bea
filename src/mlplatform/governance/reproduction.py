"""Reproduction from lineage: may a version be retrained from what it recorded, and did the
retraining reproduce it?

The inputs are checked first (the training set's bytes and batches, the spec hash); then the
version's family is retrained with the current code (`mlplatform.jobs.models.reproduce_job`)
and the params and held-out quality metrics are compared with the recorded run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlplatform.spec import UseCase

# Reproduced quality may differ from the recorded one by at most this (absolute, AUC): half
# the default champion margin (0.002), so a reproduction can never flip a gate decision.
DEFAULT_TOLERANCE = 0.001
# What training itself records (evaluation metrics need TFMA and are compared by their run).
QUALITY_METRICS = ("auc_overall", "auc_recent")


class ReproductionError(RuntimeError):
    """The recorded lineage cannot be replayed (inputs gone or changed); says which."""


@dataclass(frozen=True)
class MetricCheck:
    name: str
    recorded: float
    reproduced: float | None

    def ok(self, tolerance: float) -> bool:
        return self.reproduced is not None and abs(self.reproduced - self.recorded) <= tolerance


@dataclass(frozen=True)
class Reproduction:
    """A retraining from lineage compared with what was recorded."""

    version: str
    run_id: str  # the reproduction's own run
    tolerance: float
    metrics: list[MetricCheck]
    param_differences: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.param_differences and all(m.ok(self.tolerance) for m in self.metrics)

    def to_text(self) -> str:
        out = [f"reproduction of v{self.version}: run {self.run_id} (tolerance {self.tolerance})"]
        for m in self.metrics:
            rep = "missing" if m.reproduced is None else f"{m.reproduced:.6f}"
            diff = "" if m.reproduced is None else f"  diff {m.reproduced - m.recorded:+.2e}"
            verdict = "ok" if m.ok(self.tolerance) else "MISMATCH"
            out.append(
                f"  {m.name:<12} recorded {m.recorded:.6f}  reproduced {rep}{diff}  {verdict}"
            )
        out += [f"  param {d}  MISMATCH" for d in self.param_differences]
        out += [f"  note: {n}" for n in self.notes]
        out.append("reproduced within tolerance" if self.ok else "NOT reproduced")
        return "\n".join(out)


def compare(
    recorded: dict[str, float],
    reproduced: dict[str, float],
    recorded_params: dict[str, str],
    reproduced_params: dict[str, str],
) -> tuple[list[MetricCheck], list[str]]:
    """Quality metrics side by side, and every param that differs (params must be equal)."""
    checks = [
        MetricCheck(m, float(recorded[m]), reproduced.get(m))
        for m in QUALITY_METRICS
        if m in recorded
    ]
    diffs = [
        f"{k}: recorded {recorded_params.get(k)!r}, reproduced {reproduced_params.get(k)!r}"
        for k in sorted(set(recorded_params) | set(reproduced_params))
        if recorded_params.get(k) != reproduced_params.get(k)
    ]
    return checks, diffs


def check_inputs(spec: UseCase, tags: dict[str, str]) -> list[str]:
    """Refuse to replay lineage whose inputs are gone or changed; returns notes otherwise."""
    import pandas as pd

    from mlplatform.data.ingest import file_sha256
    from mlplatform.tracking import git_commit

    path = Path(tags.get("training_set", ""))
    if not tags.get("training_set") or not path.is_file():
        raise ReproductionError(
            f"the recorded training set {tags.get('training_set', '(none)')} is gone: rebuild "
            "it from the recorded batches (`mlplatform features build`) and pass it as a new "
            "training set"
        )
    recorded_sha = tags.get("training_set_sha256")
    if recorded_sha and file_sha256(path) != recorded_sha:
        raise ReproductionError(
            f"{path} changed since registration (sha256 {file_sha256(path)[:12]}, recorded "
            f"{recorded_sha[:12]}): it is not the training set this version was trained on"
        )
    batches = sorted(pd.read_parquet(path, columns=["batch_id"])["batch_id"].dropna().unique())
    recorded_batches = sorted(b for b in tags.get("data_batches", "").split(",") if b)
    if batches != recorded_batches:
        raise ReproductionError(
            f"{path} holds batches {[b[:12] for b in batches]}, the version was trained on "
            f"{[b[:12] for b in recorded_batches]}"
        )
    if tags.get("spec_hash") != spec.spec_hash():
        raise ReproductionError(
            f"usecases/{spec.name}.yaml changed since this version was trained (spec hash "
            f"{spec.spec_hash()}, recorded {tags.get('spec_hash')}); check out commit "
            f"{tags.get('git_commit')} to reproduce it"
        )
    notes = []
    if not recorded_sha:
        notes.append("no training-set hash recorded: checked its batches only")
    now = git_commit()
    if now != tags.get("git_commit"):
        notes.append(f"code is at {now}, the version was trained at {tags.get('git_commit')}")
    return notes

