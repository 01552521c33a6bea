"""The canary controller's `TrafficBackend` on a cluster: KServe's canary rollout.

KServe (Serverless mode) keeps the previous ready revision of an InferenceService (the
champion) and the latest one (the challenger, from a new storageUri) and splits requests by
`spec.predictor.canaryTrafficPercent`. This backend moves that one field through the
Kubernetes API (a JSON merge patch on the custom object), so `CanaryController` runs the same
analysis against a cluster as against the local router:

    from kubernetes import config
    backend = KServeBackend("taxi", "mlplatform", api_client=config.new_client_from_config())
    CanaryController(policy, backend, metrics).run()

Modes: `split` is what KServe does, `champion-only` is 0%; `shadow` (mirroring) is not
something KServe's canary can do, so it is refused with the alternatives named.
"""

from __future__ import annotations

import time
from typing import Any

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"

SHADOW_ALTERNATIVES = (
    "KServe's canary rollout only splits traffic (canaryTrafficPercent); it cannot mirror "
    "requests to the challenger. For shadow mode use the local router "
    "(`mlplatform.release.router`, mode 'shadow', docs/decisions/0008) or Seldon Core 2, whose "
    "Experiment can mirror to a candidate (manifests/base/seldon)."
)


class ShadowNotSupported(RuntimeError):
    """KServe cannot mirror traffic; the message names what can."""


class KServeBackend:
    """Drives one InferenceService's canary share (a few attempts: a rollback must land)."""

    def __init__(
        self,
        name: str,
        namespace: str = "mlplatform",
        *,
        api_client: Any = None,
        attempts: int = 3,
    ) -> None:
        from kubernetes import client

        self.name = name
        self.namespace = namespace
        self.attempts = attempts
        self.api = client.CustomObjectsApi(api_client or client.ApiClient())

    @classmethod
    def from_kubeconfig(
        cls, name: str, namespace: str = "mlplatform", context: str | None = None
    ) -> KServeBackend:
        """Use ~/.kube/config (or the pod's service account when running in a cluster)."""
        import os

        from kubernetes import config

        # $KUBECONFIG read now: the client library reads it once, at its import.
        kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        try:
            api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        except config.ConfigException as exc:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                raise RuntimeError(
                    f"no Kubernetes access: kubeconfig {kubeconfig}, context {context!r}: {exc} "
                    "(and not running in a pod); `mlplatform cluster up` creates the kind "
                    "cluster and its context, or pass --context"
                ) from exc
            api_client = None
        return cls(name, namespace, api_client=api_client)

    def set_challenger_percent(self, percent: int) -> None:
        """Give the latest revision (the challenger) `percent` of the requests."""
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"canaryTrafficPercent must be an integer 0..100, got {percent!r}")
        self._patch({"spec": {"predictor": {"canaryTrafficPercent": percent}}})

    def set_mode(self, mode: str) -> None:
        """`split`: nothing to do (KServe splits); `champion-only`: 0%; `shadow`: refused."""
        if mode == "split":
            return
        if mode == "champion-only":
            self._patch({"spec": {"predictor": {"canaryTrafficPercent": 0}}})
            return
        if mode == "shadow":
            # The controller may already have shifted a share: leave the champion with all of
            # it, so refusing the mode never leaves clients on an unjudged challenger.
            self._patch({"spec": {"predictor": {"canaryTrafficPercent": 0}}})
            raise ShadowNotSupported(
                f"shadow mode on InferenceService {self.namespace}/{self.name}: "
                f"{SHADOW_ALTERNATIVES} The champion keeps 100% of the traffic."
            )
        raise ValueError(f"mode {mode!r}: expected 'split', 'champion-only' or 'shadow'")

    def state(self) -> dict:
        """The configured share and the traffic KServe reports per revision."""
        obj = self._call(
            self.api.get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            self.name,
        )
        predictor = obj.get("spec", {}).get("predictor", {})
        status = obj.get("status", {}).get("components", {}).get("predictor", {})
        return {
            # The registry version of the newest artifact (the challenger during a canary).
            "version": obj.get("metadata", {}).get("labels", {}).get("mlplatform/version"),
            "canary_traffic_percent": predictor.get("canaryTrafficPercent"),
            "traffic": status.get("traffic", []),
            "latest_revision": status.get("latestCreatedRevision"),
            "previous_revision": status.get("previousRolledoutRevision"),
        }

    def _patch(self, body: dict) -> dict:
        return self._call(
            self.api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            self.name,
            body,
        )

    def _call(self, method, *args):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        for attempt in range(self.attempts):
            try:
                return method(*args, _request_timeout=10)
            except ApiException as exc:
                if exc.status == 404:
                    raise LookupError(
                        f"InferenceService {self.namespace}/{self.name} not found: deploy it "
                        "first (`mlplatform cluster deploy --alias champion`)"
                    ) from exc
                if exc.status and exc.status < 500:  # refused: retrying will not help
                    raise RuntimeError(
                        f"the Kubernetes API refused the change to InferenceService "
                        f"{self.namespace}/{self.name}: HTTP {exc.status} {exc.body}"
                    ) from exc
                if attempt == self.attempts - 1:
                    raise
            except (HTTPError, OSError):
                if attempt == self.attempts - 1:
                    raise
            time.sleep(0.2 * (attempt + 1))
        raise AssertionError("not reached")
