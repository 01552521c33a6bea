"""Deploy a registry alias as the KServe InferenceService of manifests/base/serving.

The alias is resolved in the cluster's MLflow registry to a version and its artifact; the
artifact lives on the home volume (cluster pipelines write it under /data), so its storage URI
is `pvc://mlplatform-home/<path under /data>`, which KServe mounts at /mnt/models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlplatform.cluster.layout import DATA_MOUNT, HOME_PVC, NAMESPACE
from mlplatform.cluster.manifests import build, to_yaml
from mlplatform.cluster.tools import run


@dataclass(frozen=True)
class Resolved:
    model: str  # registered model name
    version: str
    artifact_uri: str  # where MLflow says the files are
    storage_uri: str  # what KServe reads


def storage_uri(artifact_uri: str, *, mount: str = DATA_MOUNT, pvc: str = HOME_PVC) -> str:
    """Map a `file://` artifact under the pods' home mount to KServe's `pvc://` URI."""
    parsed = urlparse(artifact_uri)
    path = Path(unquote(parsed.path)) if parsed.scheme in ("file", "") else None
    if path is None or not path.is_relative_to(mount):
        raise ValueError(
            f"artifact {artifact_uri!r} is not on the home volume ({mount}): the cluster serves "
            "models registered by pipelines that ran on it (`mlplatform cluster submit`)"
        )
    return f"pvc://{pvc}/{path.relative_to(mount).as_posix()}"


def resolve(usecase: str, alias: str, tracking_uri: str) -> Resolved:
    """The version behind `alias` and the storage URI of its artifact."""
    import os

    # A port-forward that is not up should fail in seconds, not after MLflow's ~2 min backoff.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    from mlflow import MlflowClient

    from mlplatform.tracking import registered_model_name

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = registered_model_name(usecase)
    mv = client.get_model_version_by_alias(name, alias)
    uri = client.get_model_version_download_uri(name, mv.version)
    return Resolved(name, str(mv.version), uri, storage_uri(uri))


def render(
    repo_root: Path, usecase: str, resolved: Resolved, canary_percent: int | None = None
) -> dict:
    """The InferenceService of the manifests, named after the use case, serving `resolved`.

    With `canary_percent`, the new artifact becomes KServe's canary revision with that share
    (the running revision keeps the rest); without it, it takes all traffic.
    """
    if canary_percent is not None and not 0 <= canary_percent <= 100:
        raise ValueError(f"--canary-percent must be within 0..100, got {canary_percent}")
    objects = build(repo_root / "manifests" / "base" / "serving")
    (isvc,) = [o for o in objects if o["kind"] == "InferenceService"]
    isvc["metadata"]["name"] = usecase
    isvc["metadata"]["namespace"] = NAMESPACE
    isvc["metadata"].setdefault("labels", {}).update(
        {"mlplatform/model": resolved.model, "mlplatform/version": resolved.version}
    )
    predictor = isvc["spec"]["predictor"]
    predictor["model"]["storageUri"] = resolved.storage_uri
    if canary_percent is None:
        predictor.pop("canaryTrafficPercent", None)
    else:
        predictor["canaryTrafficPercent"] = canary_percent
    return isvc


def apply(isvc: dict, context: str | None = None) -> None:
    """kubectl apply the InferenceService (its ServingRuntime comes with `cluster up`)."""
    cmd = ["kubectl", *(["--context", context] if context else []), "apply", "-f", "-"]
    run(cmd, input_text=to_yaml([isvc]))
