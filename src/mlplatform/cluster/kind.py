"""A local kind cluster with Kubeflow Pipelines, KServe and the platform's services.

`up` creates the cluster (one node, the host's `.mlplatform/kind/` mounted as the node's
/mlplatform, which pods see as /data), loads the images, installs the pinned upstream releases
(KFP standalone from manifests/kfp, cert-manager, Knative Serving + Kourier, KServe) and
applies manifests/overlays/kind. `down` deletes the cluster; the host folder stays.
Every version is pinned here and nowhere else.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlplatform.cluster import images
from mlplatform.cluster.manifests import apply_overlay
from mlplatform.cluster.tools import require, run

CLUSTER_NAME = "mlplatform"
# kind v0.25.0's node image; manifests are validated against the same minor (tests).
KIND_NODE_IMAGE = "kindest/node:v1.31.2"
KUBERNETES_VERSION = "1.31.0"
KFP_VERSION = "2.4.0"  # = kfp-server-api in requirements/pipeline.lock
KSERVE_VERSION = "v0.14.1"  # the CRDs the kserve 0.14 SDK of the serving env models
KNATIVE_VERSION = "knative-v1.15.2"  # KServe's canary rollout needs Knative revisions
KOURIER_VERSION = "knative-v1.15.1"  # the light ingress for Knative (no Istio on a laptop)
CERT_MANAGER_VERSION = "v1.16.1"  # KServe's webhook certificates

_GH = "https://github.com"


@dataclass(frozen=True)
class Step:
    """One install step: `kubectl apply` of a URL or kustomization, then a wait."""

    what: str
    apply: list[str]  # kubectl arguments after `kubectl`
    wait: list[str] | None = None


def install_steps(repo_root: Path) -> list[Step]:
    """The pinned upstream installs, in dependency order."""
    kfp = repo_root / "manifests" / "kfp"
    kn = f"{_GH}/knative/serving/releases/download/{KNATIVE_VERSION}"
    return [
        Step(
            "Kubeflow Pipelines (cluster-scoped)",
            ["apply", "-k", str(kfp / "cluster-scoped")],
            [
                "wait",
                "--for",
                "condition=established",
                "--timeout=120s",
                "crd/applications.app.k8s.io",
            ],  # fmt: skip
        ),
        Step(
            f"Kubeflow Pipelines {KFP_VERSION} standalone",
            ["apply", "-k", str(kfp / "standalone")],
            _wait_deployments("kubeflow", "900s"),
        ),
        Step(
            f"cert-manager {CERT_MANAGER_VERSION}",
            [
                "apply",
                "-f",
                f"{_GH}/cert-manager/cert-manager/releases/download/"
                f"{CERT_MANAGER_VERSION}/cert-manager.yaml",
            ],
            _wait_deployments("cert-manager", "300s"),
        ),
        Step("Knative Serving CRDs", ["apply", "-f", f"{kn}/serving-crds.yaml"]),
        Step(
            f"Knative Serving {KNATIVE_VERSION}",
            ["apply", "-f", f"{kn}/serving-core.yaml"],
            _wait_deployments("knative-serving", "300s"),
        ),
        Step(
            "Kourier ingress",
            [
                "apply",
                "-f",
                f"{_GH}/knative/net-kourier/releases/download/{KOURIER_VERSION}/kourier.yaml",
            ],
            _wait_deployments("kourier-system", "300s"),
        ),
        Step(
            "Knative uses Kourier",
            [
                "patch",
                "configmap/config-network",
                "-n",
                "knative-serving",
                "--type",
                "merge",
                "-p",
                '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}',
            ],
        ),
        Step(
            f"KServe {KSERVE_VERSION}",
            [
                "apply",
                "--server-side",
                "-f",
                f"{_GH}/kserve/kserve/releases/download/{KSERVE_VERSION}/kserve.yaml",
            ],
            _wait_deployments("kserve", "300s"),
        ),
        Step(
            "KServe cluster resources",
            [
                "apply",
                "--server-side",
                "-f",
                f"{_GH}/kserve/kserve/releases/download/{KSERVE_VERSION}/"
                "kserve-cluster-resources.yaml",
            ],
        ),
    ]


def _wait_deployments(namespace: str, timeout: str) -> list[str]:
    return ["wait", "--for=condition=Available", "deployment", "--all", "-n", namespace,
            f"--timeout={timeout}"]  # fmt: skip


def _kserve_without_istio(context: list[str]) -> None:
    """Set `disableIstioVirtualHost` in KServe's ingress config, keeping its other keys."""
    raw = run(["kubectl", *context, "get", "configmap", "inferenceservice-config", "-n",
               "kserve", "-o", "json"])  # fmt: skip
    ingress = json.loads(json.loads(raw)["data"]["ingress"])
    ingress["disableIstioVirtualHost"] = True
    patch = json.dumps({"data": {"ingress": json.dumps(ingress)}})
    run(["kubectl", *context, "patch", "configmap/inferenceservice-config", "-n", "kserve",
         "--type", "merge", "-p", patch])  # fmt: skip


def host_folder(repo_root: Path) -> Path:
    """The host side of the node's /mlplatform (pods: /data): home/, source/ live here."""
    return repo_root / ".mlplatform" / "kind"


def kind_config(host_dir: Path) -> str:
    """kind's cluster config: one node, the host folder mounted, the KFP UI port mapped."""
    return f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: {CLUSTER_NAME}
nodes:
  - role: control-plane
    image: {KIND_NODE_IMAGE}
    extraMounts:
      - hostPath: {host_dir.resolve()}
        containerPath: /mlplatform
"""


def stage_sources(repo_root: Path, shared_data: Path) -> Path:
    """Copy the shipped data into the host folder (pods read /data/source/...)."""
    target = host_folder(repo_root) / "source"
    target.mkdir(parents=True, exist_ok=True)
    (host_folder(repo_root) / "mlplatform").mkdir(exist_ok=True)
    if shared_data.is_dir():
        shutil.copytree(shared_data, target, dirs_exist_ok=True)
    return target


def cluster_exists() -> bool:
    require("kind")
    out = run(["kind", "get", "clusters"], check=False)
    return CLUSTER_NAME in out.split()


def up(repo_root: Path, shared_data: Path, *, build_images: bool = True) -> None:
    """Create (or reuse) the kind cluster and install everything the cluster flow needs."""
    require("docker", "kind", "kubectl")
    stage_sources(repo_root, shared_data)
    if not cluster_exists():
        config = host_folder(repo_root) / "kind-config.yaml"
        config.write_text(kind_config(host_folder(repo_root)))
        run(["kind", "create", "cluster", "--config", str(config), "--wait", "120s"])
    if build_images:
        images.build(repo_root)
    images.load_into_kind(CLUSTER_NAME)
    context = ["--context", f"kind-{CLUSTER_NAME}"]
    for step in install_steps(repo_root):
        print(f"== {step.what}", flush=True)
        run(["kubectl", *context, *step.apply])
        if step.wait:
            run(["kubectl", *context, *step.wait])
    print("== KServe routes through Kourier, not Istio", flush=True)
    _kserve_without_istio(context)
    # The InferenceService comes with `mlplatform cluster deploy`, which knows the artifact.
    apply_overlay(
        repo_root / "manifests" / "overlays" / "kind",
        context=f"kind-{CLUSTER_NAME}",
        skip_kinds={"InferenceService"},
    )


def down() -> None:
    """Delete the kind cluster (the host folder with home and MLflow artifacts stays)."""
    require("kind")
    run(["kind", "delete", "cluster", "--name", CLUSTER_NAME])
