"""Registered models: one per use case, versions tagged with lineage and battery results.

Aliases carry the lifecycle: `challenger` (battery passed and beat the champion), `champion`
(serving production). A version that failed its battery can never become `challenger`.
Stages (Staging/Production/Archived), their history, approvals and promotion to `champion`
live in mlplatform.governance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlplatform.spec import UseCase
from mlplatform.tracking import registered_model_name

CHALLENGER = "challenger"
CHAMPION = "champion"
BATTERY_PREFIX = "battery."


class PromotionRefused(RuntimeError):
    """A lifecycle change that the rules forbid; the message names the rule."""


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    challenger_quality: float
    champion_version: str | None = None
    champion_quality: float | None = None


def client():
    from mlflow import MlflowClient

    return MlflowClient()


def register(spec: UseCase, run_id: str, model_uri: str, extra_tags: dict[str, str]) -> str:
    """Register the run's model as a new version with the run's lineage; returns the version."""
    import mlflow

    c = client()
    run = c.get_run(run_id)
    name = registered_model_name(spec.name)
    try:
        c.get_registered_model(name)
    except Exception:  # first version: create the model with a description
        c.create_registered_model(name, description=spec.description, tags={"usecase": spec.name})
    lineage = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    if lineage.get("training_set") and Path(lineage["training_set"]).is_file():
        # The file's content hash: reproduction proves it retrains on these exact bytes.
        from mlplatform.data.ingest import file_sha256

        lineage["training_set_sha256"] = file_sha256(Path(lineage["training_set"]))
    metrics = {f"metric.{k}": f"{v:.6g}" for k, v in run.data.metrics.items()}
    mv = mlflow.register_model(
        model_uri, name, tags={**lineage, **metrics, **extra_tags, "run_id": run_id}
    )
    return str(mv.version)


def version_tags(spec: UseCase, version: str) -> dict[str, str]:
    return dict(client().get_model_version(registered_model_name(spec.name), version).tags)


def record_battery(spec: UseCase, version: str, results: dict[str, tuple[bool, str]]) -> bool:
    """Store each check as `battery.<name>` = passed|failed: detail; returns overall pass."""
    c = client()
    name = registered_model_name(spec.name)
    for check, (ok, detail) in results.items():
        value = ("passed" if ok else "failed") + (f": {detail}" if detail else "")
        c.set_model_version_tag(name, version, f"{BATTERY_PREFIX}{check}", value[:4900])
    passed = all(ok for ok, _ in results.values())
    c.set_model_version_tag(name, version, "battery_passed", str(passed).lower())
    return passed


def battery_failures(tags: dict[str, str]) -> list[str]:
    if tags.get("battery_passed") is None:
        return ["the test battery has not run on this version"]
    return [
        f"{k[len(BATTERY_PREFIX) :]}: {v}"
        for k, v in tags.items()
        if k.startswith(BATTERY_PREFIX) and not v.startswith("passed")
    ]


def alias_version(spec: UseCase, alias: str) -> str | None:
    try:
        mv = client().get_model_version_by_alias(registered_model_name(spec.name), alias)
    except Exception:  # no such alias yet
        return None
    return str(mv.version)


def quality_of(tags: dict[str, str]) -> float:
    return float(tags["selection_quality"])


def champion_on_candidate_rows(
    spec: UseCase, tags: dict[str, str], champion: str
) -> tuple[float, int]:
    """The champion's selection metric on the rows the candidate's quality was measured on
    (its held-out `selection.slice`), and how many rows that is.

    Recorded qualities come from different periods: after a drift the champion's old score
    says nothing about today, so the two versions must be compared on the same, newest rows.
    """
    import mlflow
    from sklearn.metrics import accuracy_score, roc_auc_score

    from mlplatform.model_jobs import _predictions
    from mlplatform.packaging.pyfunc import signature_frame
    from mlplatform.training.preprocessing import model_inputs

    rows = _predictions(tags["run_id"])
    if spec.selection.slice == "recent" and "recent_period" in rows:
        rows = rows[rows["recent_period"] == "recent"]
    y = rows[spec.label].to_numpy().astype(int)
    if len(set(y)) < 2:
        raise ValueError(f"the candidate's {spec.selection.slice} rows have one class only")
    model = mlflow.pyfunc.load_model(f"models:/{registered_model_name(spec.name)}/{champion}")
    numeric, categorical = model_inputs(spec)
    proba = model.predict(signature_frame(rows, numeric, categorical))["probability"].to_numpy()
    if spec.selection.metric == "auc":
        return float(roc_auc_score(y, proba)), len(rows)
    return float(accuracy_score(y, proba >= spec.selection.threshold)), len(rows)


def champion_challenger_gate(spec: UseCase, version: str) -> GateDecision:
    """The candidate must beat the champion on the selection slice by the spec's margin, and
    must not break fairness or the latency budget. The champion is scored now on the
    candidate's own held-out rows (the rows its recorded quality came from); only when that
    is impossible (no stored predictions) does the champion's recorded quality stand in."""
    tags = version_tags(spec, version)
    quality = quality_of(tags)
    from mlplatform.evaluation.fairness import Verdict, verdict_of

    if verdict_of(tags) is Verdict.FAIL:
        return GateDecision(False, "fairness gate FAIL: a gap is shown to exceed the limit",
                            quality)
    p99 = float(tags.get("metric.serving_single_p99_ms", "0"))
    if p99 > spec.constraints.latency_p99_ms:
        return GateDecision(False, f"p99 {p99} ms over the budget", quality)
    champ = alias_version(spec, CHAMPION)
    if champ is None:
        return GateDecision(True, "no champion yet: the candidate becomes the challenger", quality)
    try:
        champ_q, n = champion_on_candidate_rows(spec, tags, champ)
        basis = f"on the same {n} held-out rows"
    except Exception as exc:  # noqa: BLE001 - any failure falls back, and says so
        champ_q = quality_of(version_tags(spec, champ))
        basis = f"recorded quality; a head-to-head was impossible: {exc}"
    margin = spec.selection.champion_margin
    if quality < champ_q + margin:
        return GateDecision(
            False,
            f"{spec.selection.metric} on {spec.selection.slice} {quality:.4f} does not beat "
            f"champion v{champ} ({champ_q:.4f}, {basis}) by the required margin {margin}",
            quality,
            champ,
            champ_q,
        )
    return GateDecision(
        True,
        f"beats champion v{champ} ({quality:.4f} vs {champ_q:.4f}, {basis})",
        quality,
        champ,
        champ_q,
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
    tags = version_tags(spec, version)
    failures = battery_failures(tags)
    if failures:
        raise PromotionRefused(
            f"version {version} cannot be the challenger: battery failed ({'; '.join(failures)})"
        )
    if not decision.passed:
        raise PromotionRefused(f"version {version} stays a candidate: {decision.reason}")
    from mlplatform.governance.approvals import resolve_user
    from mlplatform.governance.stages import Stage, move_alias

    client().set_model_version_tag(
        registered_model_name(spec.name), version, "gate", decision.reason
    )
    move_alias(spec, Stage.STAGING, version, actor or resolve_user(), decision.reason, home)
