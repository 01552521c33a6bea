"""Canary release with automated rollback, on real processes: two model servers (v1 champion,
v2 challenger) from the serving env, the weighted router, and a fault proxy in front of the
challenger for the bad cases. Load comes from this test at ~100 req/s; the controller judges
latency and errors from the router's metrics and the KPI from the prediction counters."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlplatform.registry import models as reg
from mlplatform.release import local_stack as ls
from mlplatform.release.canary import (
    CanaryController,
    CanaryPolicy,
    CanaryResult,
    LocalRouterBackend,
    MetricsSource,
    SideStats,
    judge,
    quantile,
)
from mlplatform.release.load import PacedLoad
from mlplatform.tracking import tracking_uri

pytestmark = pytest.mark.integration
PREDICT = "/v1/models/taxi:predict"
# Half the traffic on the challenger and 2 s rounds: ~100 requests per side and round at
# 100 req/s. The latency thresholds are wide because this box is shared: 2 cores, a load
# average of 2-5 from other jobs, the two model servers alone need ~1.2 cores at 100 req/s,
# and each of their full garbage collections stops it for ~230 ms. Between two *identical*
# servers the per-round p99 ratio measured median 1.0 but above 1.25 in 7-28% and above 2 in
# 3-5% of rounds, so the default 1.10 would roll a good challenger back by chance. Here the
# bound is 2.5x and the slow challenger is 5x slower (its ratio measured 2.8-14x); the default
# 1.10 against the seed story's +15% is checked on `judge` directly. Four passes to promote and
# three failures to roll back, after a warm-up, absorb the rest of the noise.
POLICY = CanaryPolicy(
    challenger_percent=50,
    interval_s=2.0,
    warmup_s=1.0,
    iterations=4,
    failure_threshold=3,
    max_p99_ms=2000.0,  # the KServe server alone is ~100-400 ms p99 here under this load
    max_p99_ratio=2.5,
)


def _post(url: str, body: dict) -> tuple[int, dict, dict]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), dict(err.headers)


@dataclass
class Stack:
    home: Path
    champion: str  # base URLs
    challenger: str
    dead_port: int  # where the challenger that failed to load would have listened
    dead_returncode: int
    v1: str
    v2: str
    body: dict  # a valid v1 request, mostly positive rows so a flip lowers the KPI


@pytest.fixture(scope="module")
def stack(trained_taxi, tmp_path_factory):
    home = trained_taxi.own_home(tmp_path_factory, "canary")
    spec, out = trained_taxi.spec, trained_taxi.run
    tags = {"family": "logistic", "selection_quality": "0.9"}
    # The same artifact registered twice: v1 champion and v2 challenger, told apart by version.
    v1, v2 = (reg.register(spec, out.run_id, out.model_uri, tags) for _ in range(2))
    tracking = tracking_uri(home)
    uris = {"champion": v1, "challenger": v2, "dead": "99"}  # no version 99: exits 2
    procs = {
        role: ls.model_server(role, "taxi", f"models:/taxi-classifier/{v}", tracking, home)
        for role, v in uris.items()
    }
    try:
        for role in ("champion", "challenger"):
            ls.wait_ready(procs[role], ls.READY["model"])
        dead_rc = procs["dead"].proc.wait(120)
        import mlflow

        example = mlflow.pyfunc.load_model(out.model_uri).input_example
        rows = json.loads(example.to_json(orient="records"))
        _, scored, _ = _post(procs["champion"].url + PREDICT, {"instances": rows})
        classes = [p["prediction"] for p in scored["predictions"]]
        pos = [r for r, c in zip(rows, classes, strict=True) if c == 1][:3]
        neg = [r for r, c in zip(rows, classes, strict=True) if c == 0][:1]
        # More positives than negatives, so flipping every prediction lowers the positive share.
        assert len(pos) > len(neg) == 1, "the input example needs both classes for the KPI case"
        body = {"instances": pos + neg}
        dead_port = int(procs["dead"].url.rsplit(":", 1)[1])
        yield Stack(
            home, procs["champion"].url, procs["challenger"].url, dead_port, dead_rc, v1, v2, body
        )
    finally:
        ls.stop(*procs.values())


@contextlib.contextmanager
def routed(stack: Stack, challenger: str, faults: list[str] | None = None, percent: int = 0):
    """The router (and a fault proxy for `challenger` if `faults`), as real processes."""
    procs = []
    kpi_url = f"{challenger}/metrics"
    proxy = None
    try:
        if faults is not None:
            proxy = ls.fault_proxy(challenger, faults, stack.home)
            procs.append(proxy)
            ls.wait_ready(proxy, ls.READY["faults"], timeout=30)
            challenger, kpi_url = proxy.url, f"{proxy.url}/metrics"
        router = ls.router(stack.champion, challenger, stack.home, percent)
        procs.append(router)
        ls.wait_ready(router, ls.READY["router"], timeout=30)
        yield router.url, challenger, kpi_url, proxy and proxy.proc
    finally:
        ls.stop(*procs)


def _canary(stack: Stack, router: str, challenger: str, kpi_url: str, promoted: list):
    return CanaryController(
        POLICY,
        LocalRouterBackend(router),
        MetricsSource(
            f"{router}/metrics",
            {"champion": f"{stack.champion}/metrics", "challenger": kpi_url},
            kpi_labels={"model": "taxi"},
        ),
        challenger_version=stack.v2,
        ready_urls={
            "champion": stack.champion + ls.READY["model"],
            "challenger": challenger + ls.READY["model"],
        },
        on_promote=promoted.append,
    )


def _run_under_load(stack, router, challenger, kpi_url) -> tuple[CanaryResult, PacedLoad, list]:
    """Run the canary while clients send ~100 req/s (`load.decided` is when it decided)."""
    promoted: list[str] = []
    with PacedLoad(router, PREDICT, stack.body) as load:
        time.sleep(0.5)  # traffic flowing before the canary starts, as in production
        result = _canary(stack, router, challenger, kpi_url, promoted).run()
        load.decided = time.monotonic()
        time.sleep(0.5)  # and after the decision: requests during the switch must be fine
    return result, load, promoted


def _assert_rolled_back(result: CanaryResult, load: PacedLoad, router: str, needle: str, capsys):
    assert result.status == "rolled_back", [r.line() for r in result.rounds]
    assert needle in result.reason, result.reason
    assert set(load.codes) == {200}, load.codes  # no client request failed
    state = LocalRouterBackend(router).state()
    assert state["challenger_percent"] == 0 and state["mode"] == "champion-only"
    for _ in range(20):  # after rollback the challenger gets nothing
        code, _, headers = _post(router + PREDICT, load.body_dict)
        assert code == 200 and headers["x-mlplatform-upstream"] == "champion"
    with capsys.disabled():
        rate = load.rate()
        print(
            f"\n[canary] rolled back ({needle}) in {result.duration_s:.1f} s at ~{rate:.0f} req/s "
            f"after {len(result.rounds)} rounds: {result.reason}"
        )


# --- pure logic --------------------------------------------------------------------------


def test_quantile_interpolates_within_the_bucket():
    buckets = {0.001: 0.0, 0.002: 50.0, 0.004: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.002)
    assert quantile(0.99, buckets) == pytest.approx(0.002 + 0.002 * 49 / 50)
    assert quantile(0.99, {0.001: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.99, {0.001: 1.0, float("inf"): 10.0}) == 0.001  # beyond the last bound


def test_judge_the_seed_story_a_15_percent_p99_regression_fails():
    policy = CanaryPolicy()
    champion = SideStats(requests=1000, p99_ms=4.0, kpi=0.40)
    assert judge(policy, champion, SideStats(requests=50, p99_ms=4.2, kpi=0.39))[0] == "pass"
    verdict, why = judge(policy, champion, SideStats(requests=50, p99_ms=4.6, kpi=0.40))
    assert verdict == "fail" and "1.15x" in why[0]
    assert judge(policy, champion, SideStats(requests=19, p99_ms=9.0))[0] == "inconclusive"
    # 4xx are the client's: a challenger with the champion's 4xx share passes
    same_4xx = SideStats(requests=100, client_errors=10, p99_ms=4.0, kpi=0.4)
    assert judge(policy, SideStats(1000, 0, 100, 4.0, 0.4), same_4xx)[0] == "pass"
    assert judge(policy, champion, SideStats(100, 2, 0, 4.0, 0.4))[0] == "fail"  # 98% < 99%


# --- real processes ----------------------------------------------------------------------


def test_router_splits_by_request_id_shadows_and_validates(stack):
    with routed(stack, stack.challenger, percent=50) as (router, _, _, _):
        seen: dict[str, set[str]] = {}
        for rid in (f"req-{i}" for i in range(40)):
            req = urllib.request.Request(
                router + PREDICT,
                json.dumps(stack.body).encode(),
                {"Content-Type": "application/json", "x-request-id": rid},
            )
            for _ in range(2):
                with urllib.request.urlopen(req) as r:
                    seen.setdefault(rid, set()).add(r.headers["x-mlplatform-upstream"])
        assert all(len(v) == 1 for v in seen.values())  # the same id, the same upstream
        assert {u for v in seen.values() for u in v} == {"champion", "challenger"}
        backend = LocalRouterBackend(router)
        with pytest.raises(urllib.error.HTTPError) as err:
            backend.set_challenger_percent(101)
        assert err.value.code == 400
        backend.set_mode("shadow")
        before = _count(f"{stack.challenger}/metrics")
        for _ in range(10):
            code, body, headers = _post(router + PREDICT, stack.body)
            assert code == 200 and body["model_version"] == f"taxi-classifier/{stack.v1}"
        time.sleep(0.5)  # the copies are sent in the background
        assert _count(f"{stack.challenger}/metrics") - before == 10
        assert backend.state()["mode"] == "shadow"
        controller = _canary(stack, router, stack.challenger, f"{stack.challenger}/metrics", [])
        rollbacks: list[tuple[str, str]] = []  # where the CLI raises the canary_rolled_back alert
        controller.on_rollback = lambda version, reason: rollbacks.append((version, reason))
        controller.start()
        assert backend.state()["challenger_percent"] == POLICY.challenger_percent
        assert controller.abort("operator said no").reason == "operator said no"
        assert [r for _, r in rollbacks] == ["operator said no"]
        state = backend.state()
        assert state["mode"] == "champion-only" and state["challenger_percent"] == 0


def _count(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mlplatform_requests_total{") and 'code="200"' in line
    )


def test_good_challenger_is_promoted(stack, capsys):
    with routed(stack, stack.challenger) as (router, challenger, kpi_url, _):
        result, load, promoted = _run_under_load(stack, router, challenger, kpi_url)
        assert result.status == "promoted", [r.line() for r in result.rounds]
        assert promoted == [stack.v2]
        assert set(load.codes) == {200}, load.codes
        state = LocalRouterBackend(router).state()
        assert state["challenger_percent"] == 100 and state["mode"] == "split"
        _, body, _ = _post(router + PREDICT, stack.body)
        assert body["model_version"] == f"taxi-classifier/{stack.v2}"
    with capsys.disabled():
        print(f"\n[canary] promoted in {result.duration_s:.1f} s: {result.rounds[-1].line()}")


@pytest.mark.parametrize(
    ("faults", "needle"),
    [
        (["--slowdown", "5"], "p99"),
        (["--error-rate", "0.05"], "success rate"),
        (["--flip-predictions"], "KPI"),
    ],
    ids=["latency", "errors", "kpi-drop"],
)
def test_bad_challenger_is_rolled_back(stack, faults, needle, capsys):
    with routed(stack, stack.challenger, faults) as (router, challenger, kpi_url, _):
        result, load, promoted = _run_under_load(stack, router, challenger, kpi_url)
        assert promoted == []
        _assert_rolled_back(result, load, router, needle, capsys)


def test_challenger_that_cannot_start_is_refused(stack, capsys):
    assert stack.dead_returncode == 2
    dead = f"http://127.0.0.1:{stack.dead_port}"
    # The router starts at 50% to a challenger that is not there: clients must not notice.
    with routed(stack, dead, percent=50) as (router, challenger, kpi_url, _):
        result, load, promoted = _run_under_load(stack, router, challenger, kpi_url)
        assert result.rounds == [] and "not ready" in result.reason
        assert load.upstreams["champion"] == sum(load.codes.values())
        text = urllib.request.urlopen(f"{router}/metrics").read().decode()
        assert 'upstream="challenger"' in text and 'code="unreachable"' in text
        _assert_rolled_back(result, load, router, "challenger", capsys)


def test_challenger_dying_mid_canary_is_rolled_back(stack, capsys):
    # A pass-through proxy stands in for the challenger so it can die without taking v2 along.
    with routed(stack, stack.challenger, faults=[]) as (router, challenger, kpi_url, proxy):
        died: list[float] = []
        killer = threading.Timer(POLICY.warmup_s + 1.5 * POLICY.interval_s, _kill, [proxy, died])
        killer.start()
        result, load, promoted = _run_under_load(stack, router, challenger, kpi_url)
        killer.join()
        assert promoted == [] and died
        retried = urllib.request.urlopen(f"{router}/metrics").read().decode()
        assert 'mlplatform_router_retries_total{reason="unreachable"}' in retried
        _assert_rolled_back(result, load, router, "cannot read", capsys)
        with capsys.disabled():
            print(f"[canary] {load.decided - died[0]:.1f} s from the crash to the rollback")


def _kill(proc: subprocess.Popen, died: list[float]) -> None:
    proc.kill()
    died.append(time.monotonic())


def test_analysis_can_read_from_prometheus(stack, capsys):
    """The controller reads the same figures through a real Prometheus scraping the router and
    both model servers (its federation endpoint), and promotes a good challenger."""
    from urllib.parse import urlsplit

    from mlplatform.monitoring.prometheus import PrometheusServer, ScrapeTargets
    from mlplatform.release.canary import prometheus_source

    with routed(stack, stack.challenger) as (router, challenger, kpi_url, _):
        targets = ScrapeTargets(
            model_servers=tuple(urlsplit(u).netloc for u in (stack.champion, challenger)),
            router=(urlsplit(router).netloc,),
        )
        with PrometheusServer(targets, scrape_interval_s=0.5, rules=[]) as prom:
            prom.wait_for('up{job="router"} == 1', timeout_s=30)
            metrics = prometheus_source(
                prom.url,
                router,
                {"champion": stack.champion, "challenger": challenger},
                kpi_labels={"model": "taxi"},
            )
            promoted: list[str] = []
            controller = CanaryController(
                POLICY,
                LocalRouterBackend(router),
                metrics,
                challenger_version=stack.v2,
                on_promote=promoted.append,
            )
            with PacedLoad(router, PREDICT, stack.body) as load:
                time.sleep(1.0)  # a few scrapes of flowing traffic first
                result = controller.run()
        assert result.status == "promoted", [r.line() for r in result.rounds]
        assert promoted == [stack.v2] and set(load.codes) == {200}, load.codes
        assert all(r.challenger.requests > 0 for r in result.rounds)
    with capsys.disabled():
        print(f"\n[canary/prometheus] promoted in {result.duration_s:.1f} s")
