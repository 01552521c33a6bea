"""The champion-challenger decision: the one place that says whether a version may replace the
champion, used by the training pipeline (registration), promotion, the canary and the replay.

A candidate must not FAIL fairness, must stay within the latency budget, and must beat the
champion on the spec's selection metric by `selection.champion_margin`: its recorded quality
against the champion scored now on the candidate's own held-out rows of the selection slice
(ADR 0016; recorded qualities come from different periods, and after a drift the champion's old
score says nothing about today). Only when those rows cannot be read does the champion's
recorded quality stand in, and the reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlplatform.registry import models as reg
from mlplatform.spec import UseCase
from mlplatform.tracking import registered_model_name


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    challenger_quality: float
    champion_version: str | None = None
    champion_quality: float | None = None
    rows: int = 0  # held-out rows both versions were scored on (0: recorded qualities)


def champion_on_candidate_rows(
    spec: UseCase, tags: dict[str, str], champion: str
) -> tuple[float, int]:
    """(champion's selection metric, rows) on the rows the candidate's recorded quality was
    measured on (its held-out `selection.slice`)."""
    import mlflow
    from sklearn.metrics import accuracy_score, roc_auc_score

    from mlplatform.packaging.pyfunc import signature_frame
    from mlplatform.training.preprocessing import model_inputs
    from mlplatform.training.run import held_out_predictions

    rows = held_out_predictions(tags["run_id"])
    if spec.selection.slice == "recent" and "recent_period" in rows:
        rows = rows[rows["recent_period"] == "recent"]
    y = rows[spec.label].to_numpy().astype(int)
    if len(set(y)) < 2:
        raise ValueError(f"the candidate's {spec.selection.slice} rows have one class only")
    model = mlflow.pyfunc.load_model(reg.version_uri(spec.name, champion))
    numeric, categorical = model_inputs(spec)
    proba = model.predict(signature_frame(rows, numeric, categorical))["probability"].to_numpy()
    if spec.selection.metric == "auc":
        return float(roc_auc_score(y, proba)), len(rows)
    return float(accuracy_score(y, proba >= spec.selection.threshold)), len(rows)


def champion_challenger(spec: UseCase, version: str) -> GateDecision:
    """May `version` replace the champion of the moment? (No champion: it may.)"""
    from mlplatform.evaluation.fairness import Verdict, verdict_of

    tags = reg.version_tags(spec, version)
    quality = reg.quality_of(tags)
    if verdict_of(tags) is Verdict.FAIL:
        return GateDecision(
            False, "fairness gate FAIL: a gap is shown to exceed the limit", quality
        )
    p99 = float(tags.get("metric.serving_single_p99_ms", "0"))
    if p99 > spec.constraints.latency_p99_ms:
        return GateDecision(False, f"p99 {p99} ms over the budget", quality)
    champ = reg.alias_version(spec, reg.CHAMPION)
    if champ is None:
        return GateDecision(True, "no champion yet: the candidate becomes the challenger", quality)
    rows = 0
    try:
        champ_q, rows = champion_on_candidate_rows(spec, tags, champ)
        basis = f"on the same {rows} held-out rows"
    except Exception as exc:  # noqa: BLE001 - any failure falls back, and says so
        champ_q = reg.quality_of(reg.version_tags(spec, champ))
        basis = f"recorded quality; a head-to-head was impossible: {exc}"
    margin = spec.selection.champion_margin
    metric = f"{spec.selection.metric} on {spec.selection.slice}"
    if quality < champ_q + margin:
        return GateDecision(
            False,
            f"{metric} {quality:.4f} does not beat champion v{champ} ({champ_q:.4f}, {basis}) "
            f"by the required margin {margin}",
            quality, champ, champ_q, rows,
        )
    return GateDecision(
        True,
        f"beats champion v{champ} ({metric} {quality:.4f} vs {champ_q:.4f}, {basis})",
        quality, champ, champ_q, rows,
    )


def set_challenger(
    spec: UseCase,
    version: str,
    decision: GateDecision,
    home: Path | None = None,
    actor: str | None = None,
) -> None:
    """Give `challenger` (stage Staging) to a battery-passing version that passed the gate;
    refuse otherwise. The move is kept in the stage history (and the audit trail under
    `home` when given); the version that held `challenger` is archived."""
    from mlplatform.governance.approvals import resolve_user
    from mlplatform.governance.stages import Stage, move_alias

    tags = reg.version_tags(spec, version)
    failures = reg.battery_failures(tags)
    if failures:
        raise reg.PromotionRefused(
            f"version {version} cannot be the challenger: battery failed ({'; '.join(failures)})"
        )
    if not decision.passed:
        raise reg.PromotionRefused(f"version {version} stays a candidate: {decision.reason}")
    reg.client().set_model_version_tag(
        registered_model_name(spec.name), version, "gate", decision.reason
    )
    move_alias(spec, Stage.STAGING, version, actor or resolve_user(), decision.reason, home)
