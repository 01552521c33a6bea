"""The MLflow model store: one registered model per use case, versions tagged with lineage and
battery results, aliases read. Nothing here decides: which version may become `challenger` or
`champion` (the champion-challenger decision, stages, approvals, promotion) is
mlplatform.governance's.
"""

from __future__ import annotations

from pathlib import Path

from mlplatform.spec import UseCase
from mlplatform.tracking import registered_model_name

CHALLENGER = "challenger"
CHAMPION = "champion"
BATTERY_PREFIX = "battery."


class PromotionRefused(RuntimeError):
    """A lifecycle change that the rules forbid; the message names the rule."""


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
    """The version `alias` points at now, or None when the alias is not set."""
    try:
        mv = client().get_model_version_by_alias(registered_model_name(spec.name), alias)
    except Exception:  # no such alias yet
        return None
    return str(mv.version)


def version_uri(usecase: str, version: str | int) -> str:
    """`models:/<usecase>-classifier/<version>`: one version, whatever the aliases do later."""
    return f"models:/{registered_model_name(usecase)}/{version}"


def selector_uri(usecase: str, version: str | None = None, alias: str | None = None) -> str:
    """The URI a user's `--version` or `--alias` names (the challenger when neither is given)."""
    if version:
        return version_uri(usecase, version)
    return f"models:/{registered_model_name(usecase)}@{alias or CHALLENGER}"


def pin(uri: str, mlflow_client=None) -> tuple[str, str]:
    """Resolve an alias in a `models:/` URI now: (the version's URI, `name/version`).

    Metrics, logs and scored rows name what was served, not an alias that may move later.
    Other URIs (runs:/, a folder) pass through with themselves as the label."""
    if not uri.startswith("models:/"):
        return uri, uri
    ref = uri[len("models:/") :]
    if "@" not in ref:
        return uri, ref
    name, alias = ref.split("@", 1)
    mv = (mlflow_client or client()).get_model_version_by_alias(name, alias)
    return f"models:/{name}/{mv.version}", f"{name}/{mv.version}"


def quality_of(tags: dict[str, str]) -> float:
    return float(tags["selection_quality"])
