"""The canary controller's KServe backend against a stub of the Kubernetes API.

There is no API server here, so a small local HTTP server stands in for it: it records every
request and answers like the API server does for a custom object (the stored InferenceService
after a merge patch, 404 for an unknown name). The assertions are on the exact calls.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlplatform.release.canary import CanaryController, CanaryPolicy, CanaryRefused, MetricsSource
from mlplatform.release.kserve_backend import KServeBackend, ShadowNotSupported

PATH = "/apis/serving.kserve.io/v1beta1/namespaces/mlplatform/inferenceservices/taxi"


def _merge(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch, as the API server applies it."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
    return target


class StubKubernetesAPI(ThreadingHTTPServer):
    """Records (method, path, content type, body, authorization) and keeps one object."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls: list[dict] = []
        self.objects = {
            PATH: {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {
                    "name": "taxi",
                    "namespace": "mlplatform",
                    "labels": {"mlplatform/version": "2"},  # as `cluster deploy` labels it
                },
                "spec": {"predictor": {"model": {"storageUri": "pvc://mlplatform-home/x"}}},
                "status": {
                    "components": {
                        "predictor": {
                            "latestCreatedRevision": "taxi-predictor-00002",
                            "previousRolledoutRevision": "taxi-predictor-00001",
                            "traffic": [
                                {"revisionName": "taxi-predictor-00002", "percent": 5},
                                {"revisionName": "taxi-predictor-00001", "percent": 95},
                            ],
                        }
                    }
                },
            }
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def patches(self) -> list[dict]:
        return [c["body"] for c in self.calls if c["method"] == "PATCH"]


class _Handler(BaseHTTPRequestHandler):
    server: StubKubernetesAPI

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body=None) -> None:
        self.server.calls.append(
            {
                "method": self.command,
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "authorization": self.headers.get("Authorization"),
                "body": body,
            }
        )

    def _not_found(self) -> None:
        self._answer(
            404,
            {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404},
        )

    def do_GET(self) -> None:
        self._record()
        if self.path == "/unready":  # a model server that is not ready
            return self._answer(503, {"ready": False})
        obj = self.server.objects.get(self.path)
        return self._answer(200, obj) if obj else self._not_found()

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._record(body)
        obj = self.server.objects.get(self.path)
        if obj is None:
            return self._not_found()
        if self.headers.get("Content-Type") != "application/merge-patch+json":
            return self._answer(415, {"kind": "Status", "code": 415})
        return self._answer(200, _merge(obj, body))


@pytest.fixture()
def api():
    server = StubKubernetesAPI()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _backend(api: StubKubernetesAPI, name: str = "taxi") -> KServeBackend:
    from kubernetes import client

    cfg = client.Configuration(host=api.url)
    cfg.api_key = {"authorization": "test-token"}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return KServeBackend(name, "mlplatform", api_client=client.ApiClient(cfg), attempts=1)


def test_set_challenger_percent_merge_patches_canary_traffic_percent(api):
    _backend(api).set_challenger_percent(5)
    assert api.calls == [
        {
            "method": "PATCH",
            "path": PATH,
            "content_type": "application/merge-patch+json",
            "authorization": "Bearer test-token",
            "body": {"spec": {"predictor": {"canaryTrafficPercent": 5}}},
        }
    ]
    predictor = api.objects[PATH]["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 5
    assert predictor["model"]["storageUri"] == "pvc://mlplatform-home/x"  # merged, not replaced


def test_modes_map_onto_the_canary_share(api):
    backend = _backend(api)
    backend.set_mode("split")  # KServe always splits: nothing to change
    assert api.calls == []
    backend.set_mode("champion-only")
    assert api.patches() == [{"spec": {"predictor": {"canaryTrafficPercent": 0}}}]


def test_shadow_is_refused_naming_the_alternatives_and_leaves_the_champion(api):
    backend = _backend(api)
    backend.set_challenger_percent(5)
    with pytest.raises(ShadowNotSupported) as err:
        backend.set_mode("shadow")
    message = str(err.value)
    assert "mlplatform/taxi" in message and "cannot mirror" in message
    assert "mlplatform.release.router" in message and "Seldon" in message
    assert api.patches()[-1] == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert api.objects[PATH]["spec"]["predictor"]["canaryTrafficPercent"] == 0


@pytest.mark.parametrize("bad", [-1, 101, 5.5, "5", True, None])
def test_bad_percentages_never_reach_the_api(api, bad):
    with pytest.raises(ValueError, match="canaryTrafficPercent must be an integer 0..100"):
        _backend(api).set_challenger_percent(bad)
    assert api.calls == []


def test_unknown_mode_is_refused(api):
    with pytest.raises(ValueError, match="'mirror'"):
        _backend(api).set_mode("mirror")
    assert api.calls == []


def test_a_missing_inferenceservice_says_what_to_do(api):
    with pytest.raises(LookupError, match="mlplatform/credit not found.*cluster deploy"):
        _backend(api, "credit").set_challenger_percent(5)
    assert [c["path"] for c in api.calls] == [PATH.replace("/taxi", "/credit")]


def test_state_reads_the_share_and_the_revisions(api):
    backend = _backend(api)
    backend.set_challenger_percent(5)
    state = backend.state()
    assert state["canary_traffic_percent"] == 5 and state["version"] == "2"
    assert state["latest_revision"] == "taxi-predictor-00002"
    assert {t["revisionName"]: t["percent"] for t in state["traffic"]} == {
        "taxi-predictor-00002": 5,
        "taxi-predictor-00001": 95,
    }
    assert api.calls[-1]["method"] == "GET" and api.calls[-1]["path"] == PATH


def test_the_controller_rolls_back_through_kserve_when_a_side_is_not_ready(api):
    """The real controller with this backend: a refused start leaves the champion at 100%."""
    controller = CanaryController(
        CanaryPolicy(challenger_percent=5, interval_s=0.0),
        _backend(api),
        MetricsSource(f"{api.url}/metrics"),
        ready_urls={"challenger": f"{api.url}/unready"},
        log=lambda line: None,
    )
    with pytest.raises(CanaryRefused, match="challenger .* is not ready"):
        controller.start()
    assert controller.result.status == "rolled_back"
    # Rollback order of the controller: champion-only first, then the share to 0.
    assert api.patches() == [
        {"spec": {"predictor": {"canaryTrafficPercent": 0}}},
        {"spec": {"predictor": {"canaryTrafficPercent": 0}}},
    ]


def test_an_operator_rollback_on_the_cluster_raises_the_platform_alert(api, tmp_path, monkeypatch):
    """`mlplatform cluster canary 0` through a kubeconfig (the stub as the API server): the share
    goes to 0 and the canary_rolled_back alert names the version the InferenceService carried."""
    from typer.testing import CliRunner

    from mlplatform.cli.main import app

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": api.url}}],
        "users": [{"name": "me", "user": {"token": "test-token"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "me"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    home = tmp_path / "home"
    out = CliRunner().invoke(app, ["cluster", "canary", "0", "--usecase", "taxi", "--context",
                                   "stub", "--home", str(home), "--reason", "p99 doubled"])
    assert out.exit_code == 0, out.output
    assert api.patches() == [{"spec": {"predictor": {"canaryTrafficPercent": 0}}}]
    (alert,) = [json.loads(x) for x in (home / "taxi" / "alerts.jsonl").read_text().splitlines()]
    assert alert["kind"] == "canary_rolled_back" and alert["version"] == "2"
    assert "p99 doubled" in alert["message"]
