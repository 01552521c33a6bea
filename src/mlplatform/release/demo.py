"""`make canary`: a release rehearsed on loopback, end to end, on real processes.

Champion and challenger model servers for the use case's registered versions, the weighted
router in front, client load at a steady rate; then two releases at the release file's share
(5% by default): a bad challenger (the same model behind a fault proxy: slower, 5% errors) is
rolled back, a good one is promoted. Every round's decision and the metrics behind it are
printed. The demo works on a copy of the registry, so the user's lifecycle stays untouched.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlplatform.registry.models import version_uri
from mlplatform.release import local_stack as ls
from mlplatform.release.canary import CanaryPolicy, CanaryResult, local_controller
from mlplatform.release.load import PacedLoad
from mlplatform.spec import UseCase
from mlplatform.tracking import registered_model_name, tracking_uri, use_workspace
from mlplatform.workspace import mlflow_dir

BAD_FAULTS = ["--slowdown", "3", "--error-rate", "0.05"]


class DemoError(RuntimeError):
    """The demo cannot run (e.g. nothing registered yet); the message says what to do."""


@dataclass(frozen=True)
class Act:
    title: str
    result: CanaryResult
    load_rate: float
    codes: dict[int, int]


def pick_versions(client, spec: UseCase) -> tuple[str, str]:
    """(champion, challenger): the aliases where set, else the newest registered version."""
    name = registered_model_name(spec.name)
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise DemoError(f"no version of {name} is registered yet: run `make run` first")
    newest = str(max(int(v.version) for v in versions))
    aliases = client.get_registered_model(name).aliases
    challenger = aliases.get("challenger", newest)
    return aliases.get("champion", challenger), challenger


def _request_body(server: str, model: str, model_uri: str, tracking: str) -> dict:
    """A few rows from the artifact's own input example, as a v1 request."""
    import mlflow

    mlflow.set_tracking_uri(tracking)
    example = mlflow.pyfunc.load_model(model_uri).input_example
    rows = json.loads(example.head(4).to_json(orient="records"))
    body = {"instances": rows}
    req = urllib.request.Request(
        f"{server}/v1/models/{model}:predict",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=30).read()  # the example must be servable
    return body


@dataclass
class _Stage:
    """The running demo: its scratch registry, the two servers and what to send them."""

    spec: UseCase
    policy: CanaryPolicy
    scratch: Path
    champion: str
    challenger_version: str
    body: dict
    rate: float
    log: Callable[[str], None]
    started: list[ls.Process]

    def release(self, title: str, target: str, promote: Callable[[str], None]) -> Act:
        """One canary of `target` (a server or a fault proxy) behind a fresh router."""
        self.log(f"\n== {title} ==")
        r = ls.router(self.champion, target, self.scratch)
        self.started.append(r)
        ls.wait_ready(r, ls.READY["router"], timeout=30)
        controller = local_controller(
            self.policy,
            r.url,
            {"champion": self.champion, "challenger": target},
            self.spec.name,
            challenger_version=self.challenger_version,
            on_promote=promote,
            log=self.log,
        )
        path = f"/v1/models/{self.spec.name}:predict"
        with PacedLoad(r.url, path, self.body, self.rate) as load:
            time.sleep(1.0)  # the champion alone serves the traffic first
            self.log(f"champion serving {load.rate():.0f} req/s through the router {r.url}")
            result = controller.run()
            time.sleep(0.5)  # requests right after the switch must be fine too
        ls.stop(r)
        codes = dict(load.codes)
        self.log(f"clients: {sum(codes.values())} requests, {load.rate():.0f} req/s, {codes}")
        return Act(title, result, load.rate(), codes)


def _governed_promotion(
    spec: UseCase, scratch: Path, version: str, log: Callable[[str], None]
) -> Callable[[str], None]:
    """Promotion through the governance gate of the registry copy, after two demo people
    approved the candidate (in production, `mlplatform approve` by two real people)."""
    from mlplatform.governance.approvals import approve
    from mlplatform.governance.promotion import promote
    from mlplatform.registry.models import PromotionRefused

    for role in ("tech-lead", "business-owner"):
        try:
            approve(spec, version, role, f"demo-{role}", scratch)
            log(f"registry copy: v{version} approved as {role} by demo-{role}")
        except PromotionRefused as exc:  # printed; the promotion below is then refused too
            log(f"registry copy: approval as {role} refused: {exc}")

    def governed(v: str) -> None:
        result = promote(spec, v, "canary-controller", scratch, reason="canary analysis passed")
        log(
            f"registry copy: {result.model} v{result.version} is now the champion "
            f"(previous: {result.previous or 'none'}; approvals {result.approvals})"
        )

    return governed


def run_demo(
    spec: UseCase,
    home: Path,
    policy: CanaryPolicy,
    rate: float = 120.0,
    log: Callable[[str], None] = print,
) -> list[Act]:
    """Rehearse a rollback and a promotion; returns what each release decided.

    MLflow points at a scratch copy of the registry while it runs, and back at what it pointed
    at before when it ends (a notebook's next call must not reach a deleted copy)."""
    from mlplatform.tracking import mlflow_uris_kept

    with mlflow_uris_kept():
        return _run_demo(spec, home, policy, rate, log)


def _run_demo(spec, home: Path, policy: CanaryPolicy, rate: float, log) -> list[Act]:
    from mlflow import MlflowClient

    db = mlflow_dir(home) / "mlflow.db"
    if not db.exists():
        raise DemoError(f"no registry at {db}: run `make run` first")
    champion_v, challenger_v = pick_versions(MlflowClient(tracking_uri(home)), spec)
    name = registered_model_name(spec.name)
    with tempfile.TemporaryDirectory(prefix="mlplatform-canary-") as tmp:
        scratch = Path(tmp)
        mlflow_dir(scratch).mkdir()
        shutil.copy2(db, mlflow_dir(scratch) / "mlflow.db")  # artifacts are read in place
        tracking = tracking_uri(scratch)
        use_workspace(scratch, spec.name)  # the governance gate reads this registry copy
        log(f"registry copied to {scratch} (your {db} is not changed)")
        log(f"champion: {name} v{champion_v}; challenger: v{challenger_v}")
        uris = {
            "champion": version_uri(spec.name, champion_v),
            "challenger": version_uri(spec.name, challenger_v),
        }
        started: list[ls.Process] = []
        try:
            servers = ls.model_pair(spec.name, uris, tracking, scratch, started, log=log)
            champion = servers["champion"].url
            body = _request_body(champion, spec.name, uris["champion"], tracking)
            stage = _Stage(spec, policy, scratch, champion, challenger_v, body, rate, log, started)
            proxy = ls.fault_proxy(servers["challenger"].url, BAD_FAULTS, scratch)
            started.append(proxy)
            ls.wait_ready(proxy, ls.READY["faults"], timeout=30)
            share = f"{policy.challenger_percent}%"
            bad = stage.release(
                f"release 1: a bad challenger ({' '.join(BAD_FAULTS)}) at {share}",
                proxy.url,
                lambda version: None,
            )
            ls.stop(proxy)

            promote = _governed_promotion(spec, scratch, challenger_v, log)

            good = stage.release(
                f"release 2: a good challenger at {share}", servers["challenger"].url, promote
            )
        finally:
            ls.stop(*started)
    acts = [bad, good]
    log("\n== summary ==")
    for a in acts:
        failed = sum(n for c, n in a.codes.items() if c != 200)
        log(
            f"{a.title}: {a.result.status} after {len(a.result.rounds)} rounds in "
            f"{a.result.duration_s:.1f} s ({a.result.reason}); client requests failed: {failed}"
        )
    return acts
