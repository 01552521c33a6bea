"""Canary analysis: send a share of traffic to a challenger, judge it round by round on what
clients experience, then promote it or roll it back (a local, Flagger-like controller).

Each round reads, as deltas since the previous round: requests, server errors (5xx and
unreachable; a 4xx is the client's bad input, compared between the two sides instead) and p99
latency per upstream from the *router's* metrics, and the KPI (share of positive predictions,
``mlplatform_predicted_positive_total / mlplatform_predicted_rows_total``) from each side's
model server (or the fault proxy in front of it), either from each process's /metrics or,
with `prometheus_source`, from a Prometheus that scrapes them. ``judge`` compares challenger
and champion against a `CanaryPolicy`; the controller counts passed and failed rounds and,
through a `TrafficBackend`, rolls back (champion-only, 0%) or promotes (``on_promote(version)``, the
promotion gate, then 100% challenger; a refusal there rolls back). Stdlib only (+ the
Prometheus text parser), so it runs in both envs.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from mlplatform.release.canary_metrics import (  # noqa: F401  (re-exported for callers)
    POSITIVES,
    ROUTER_LATENCY,
    ROUTER_REQUESTS,
    ROWS,
    SIDES,
    Counters,
    MetricsError,
    MetricsSource,
    SideStats,
    prometheus_source,
    quantile,
)
from mlplatform.release.local_stack import READY

MODES = ("split", "shadow", "champion-only")

Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class CanaryPolicy:
    """How much traffic the challenger gets and what it must do to be promoted."""

    challenger_percent: int = 5
    interval_s: float = 5.0  # length of one analysis round
    warmup_s: float = 0.0  # after the shift, before round 1: queues settle, caches warm up
    iterations: int = 6  # passed rounds needed for promotion
    failure_threshold: int = 2  # failed rounds (not necessarily consecutive) before rollback
    min_success_rate: float = 0.99  # of the challenger; 5xx and unreachable count as failures
    max_p99_ms: float = 10.0  # absolute, at the router
    max_p99_ratio: float = 1.10  # challenger p99 / champion p99
    max_kpi_drop: float = 0.02  # champion positive share - challenger positive share
    max_client_error_increase: float = 0.01  # challenger 4xx rate - champion 4xx rate
    min_requests: int = 20  # per side and round; fewer makes the round inconclusive
    max_inconclusive: int = 10  # that many rounds without enough traffic -> rollback
    mode: Literal["split", "shadow"] = "split"  # shadow: judge mirrored copies

    def __post_init__(self) -> None:
        if not 1 <= self.challenger_percent <= 100:
            raise ValueError("challenger_percent must be within 1..100")
        if min(self.interval_s, self.warmup_s) < 0:
            raise ValueError("interval_s and warmup_s must be >= 0")
        if min(self.iterations, self.failure_threshold, self.max_inconclusive) < 1:
            raise ValueError("iterations, failure_threshold and max_inconclusive must be >= 1")
        if self.mode not in ("split", "shadow"):
            raise ValueError(f"mode {self.mode!r}: the analysis runs in 'split' or 'shadow'")


class CanaryRefused(RuntimeError):
    """`start` would not shift traffic (an upstream is not ready); the champion keeps 100%."""


def judge(
    policy: CanaryPolicy, champion: SideStats, challenger: SideStats
) -> tuple[Verdict, list[str]]:
    """One round's verdict and, if not `pass`, why."""
    if min(champion.requests, challenger.requests) < policy.min_requests:
        return "inconclusive", [
            f"too little traffic: {challenger.requests} challenger / {champion.requests} "
            f"champion requests (< {policy.min_requests})"
        ]
    why = []
    if challenger.success_rate < policy.min_success_rate:
        why.append(
            f"success rate {challenger.success_rate:.3f} < {policy.min_success_rate} "
            f"({challenger.server_errors} server errors in {challenger.requests})"
        )
    extra_4xx = challenger.client_error_rate - champion.client_error_rate
    if extra_4xx > policy.max_client_error_increase:
        why.append(f"4xx rate {extra_4xx:+.3f} above the champion's")
    if challenger.p99_ms is not None and champion.p99_ms is not None:
        if challenger.p99_ms > policy.max_p99_ms:
            why.append(f"p99 {challenger.p99_ms:.2f} ms > budget {policy.max_p99_ms} ms")
        if champion.p99_ms > 0 and challenger.p99_ms / champion.p99_ms > policy.max_p99_ratio:
            why.append(
                f"p99 {challenger.p99_ms:.2f} ms is {challenger.p99_ms / champion.p99_ms:.2f}x "
                f"the champion's {champion.p99_ms:.2f} ms (> {policy.max_p99_ratio}x)"
            )
    kpis = (champion.kpi, challenger.kpi)
    if None not in kpis and kpis[0] - kpis[1] > policy.max_kpi_drop:
        why.append(
            f"KPI {challenger.kpi:.3f} vs champion {champion.kpi:.3f} "
            f"(drop > {policy.max_kpi_drop})"
        )
    return ("fail" if why else "pass"), why


class TrafficBackend(Protocol):
    """Whatever moves traffic: the local router now, a KServe InferenceService later."""

    def set_challenger_percent(self, percent: int) -> None: ...

    def set_mode(self, mode: str) -> None: ...


class LocalRouterBackend:
    """Drives `mlplatform.release.router` over HTTP (a few attempts: a rollback must land)."""

    def __init__(self, router_url: str, timeout_s: float = 5.0, attempts: int = 3) -> None:
        self.url = router_url.rstrip("/")
        self.timeout_s = timeout_s
        self.attempts = attempts

    def set_challenger_percent(self, percent: int) -> None:
        self._post("/router/weights", {"challenger_percent": percent})

    def set_mode(self, mode: str) -> None:
        self._post("/router/mode", {"mode": mode})

    def state(self) -> dict:
        with urllib.request.urlopen(self.url + "/router/state", timeout=self.timeout_s) as r:
            return json.loads(r.read())

    def _post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(
            self.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        for attempt in range(self.attempts):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError:
                raise  # the router refused the value: retrying will not help
            except OSError:
                if attempt == self.attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("not reached")


@dataclass(frozen=True)
class RoundReport:
    index: int
    verdict: Verdict
    reasons: tuple[str, ...]
    champion: SideStats
    challenger: SideStats
    decision: Literal["continue", "promoted", "rolled_back"] = "continue"

    def line(self) -> str:
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        return (
            f"round {self.index}: {self.verdict}{why} | challenger {self.challenger.line()} | "
            f"champion {self.champion.line()} -> {self.decision}"
        )


@dataclass(frozen=True)
class CanaryResult:
    status: Literal["promoted", "rolled_back"]
    reason: str
    rounds: list[RoundReport]
    duration_s: float  # from start() to the decision


class CanaryController:
    """Runs the analysis: `start`, then `step` until `result` is set (or just `run`)."""

    def __init__(
        self,
        policy: CanaryPolicy,
        backend: TrafficBackend,
        metrics: MetricsSource,
        *,
        challenger_version: str = "",
        ready_urls: Mapping[str, str] | None = None,
        on_promote: Callable[[str], None] | None = None,
        on_rollback: Callable[[str, str], None] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.policy, self.backend, self.metrics = policy, backend, metrics
        self.on_rollback = on_rollback  # (version, reason): e.g. raise the platform's alert
        self.challenger_version = challenger_version
        self.ready_urls = dict(ready_urls or {})  # side -> URL answering 200 when ready
        self.on_promote = on_promote or (lambda version: None)
        self.log = log
        self.rounds: list[RoundReport] = []
        self.result: CanaryResult | None = None
        self._stop = threading.Event()  # lets abort() cut a round's wait short
        self._t0 = time.monotonic()
        self._counts = {"pass": 0, "fail": 0, "inconclusive": 0}

    def start(self) -> None:
        """Check both sides, then shift the policy's traffic; raises CanaryRefused if unready."""
        self._t0 = time.monotonic()
        for side, url in self.ready_urls.items():
            problem = _not_ready(url)
            if problem:
                self._rollback(f"refused to start: the {side} at {url} is not ready ({problem})")
                raise CanaryRefused(self.result.reason)
        try:
            self.metrics.delta()  # fails early if the router's metrics cannot be read
        except MetricsError as exc:
            self._rollback(f"refused to start: {exc}")
            raise CanaryRefused(self.result.reason) from exc
        self.backend.set_challenger_percent(self.policy.challenger_percent)
        self.backend.set_mode(self.policy.mode)
        # The first requests after a shift still meet the old state (the champion's queue, cold
        # connections to the challenger); judging them would blame the challenger for it.
        self._stop.wait(self.policy.warmup_s)
        self.metrics.delta()  # baseline: round 1 counts settled canary traffic only
        self.log(f"canary started: {self.policy.challenger_percent}% ({self.policy.mode})")

    def step(self) -> RoundReport:
        """Wait one interval, judge it, and promote or roll back when the counts say so."""
        if self.result is not None:
            raise RuntimeError(f"the canary is over: {self.result.status}")
        self._stop.wait(self.policy.interval_s)
        try:
            stats = self.metrics.delta()
            verdict, why = judge(self.policy, stats["champion"], stats["challenger"])
        except MetricsError as exc:  # e.g. the challenger's server died: a failed round
            stats, verdict, why = {s: SideStats() for s in SIDES}, "fail", [str(exc)]
        index = len(self.rounds) + 1
        if self.result is None:  # abort() may have decided while we waited
            self._counts[verdict] += 1
            if self._counts["fail"] >= self.policy.failure_threshold:
                failed = [r for r in self.rounds if r.verdict == "fail"]
                lines = [f"round {r.index}: {'; '.join(r.reasons)}" for r in failed]
                lines.append(f"round {index}: {'; '.join(why)}")
                self._rollback(f"{self._counts['fail']} failed rounds: " + " | ".join(lines))
            elif self._counts["pass"] >= self.policy.iterations:
                self._promote()
            elif self._counts["inconclusive"] >= self.policy.max_inconclusive:
                self._rollback(f"{self._counts['inconclusive']} rounds without enough traffic")
        decision = "continue" if self.result is None else self.result.status
        champion, challenger = stats["champion"], stats["challenger"]
        self.rounds.append(RoundReport(index, verdict, tuple(why), champion, challenger, decision))
        return self.rounds[-1]

    def run(self) -> CanaryResult:
        """Start and step until promoted or rolled back, printing every round."""
        try:
            self.start()
        except CanaryRefused as exc:
            self.log(str(exc))
            return self.result
        while self.result is None:
            self.log(self.step().line())
        self.log(f"canary {self.result.status}: {self.result.reason}")
        return self.result

    def abort(self, reason: str = "aborted by the operator") -> CanaryResult:
        """Roll back now (safe from another thread while `run` waits)."""
        if self.result is None:
            self._rollback(reason)
        self._stop.set()
        return self.result

    def _rollback(self, reason: str) -> None:
        # Mode first: champion-only stops challenger traffic at once, whatever the weight.
        self.backend.set_mode("champion-only")
        self.backend.set_challenger_percent(0)
        self._finish("rolled_back", reason)
        if self.on_rollback is not None:
            try:
                self.on_rollback(self.challenger_version, reason)
            except Exception as exc:  # noqa: BLE001 - the rollback stands; the alert is extra
                self.log(f"rollback alert not delivered: {exc}")

    def _promote(self) -> None:
        # The promotion gate (registry lifecycle, approvals) decides before any traffic moves:
        # a refused promotion leaves the champion serving everything.
        try:
            self.on_promote(self.challenger_version)
        except Exception as exc:  # noqa: BLE001 - any refusal must end in a rollback
            self._rollback(f"analysis passed but the promotion was refused: {exc}")
            return
        self.backend.set_challenger_percent(100)
        self.backend.set_mode("split")
        self._finish("promoted", f"{self._counts['pass']} rounds passed")

    def _finish(self, status: Literal["promoted", "rolled_back"], reason: str) -> None:
        # `rounds` is the live list so the report of the deciding round lands in it too.
        self.result = CanaryResult(status, reason, self.rounds, time.monotonic() - self._t0)


def _not_ready(url: str) -> str:
    """'' when `url` answers 2xx, else what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return "" if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except OSError as exc:
        return str(getattr(exc, "reason", exc))


def local_controller(
    policy: CanaryPolicy,
    router_url: str,
    upstreams: Mapping[str, str],
    model_name: str,
    *,
    challenger_version: str = "",
    on_promote: Callable[[str], None] | None = None,
    on_rollback: Callable[[str, str], None] | None = None,
    log: Callable[[str], None] = print,
    prometheus_url: str | None = None,
) -> CanaryController:
    """The controller of a local deployment: `router_url` in front of `upstreams` (side ->
    model server or fault-proxy base URL), analysis from their /metrics, or from the
    Prometheus at `prometheus_url` that scrapes them."""
    sides = {side: upstreams[side] for side in SIDES}
    if prometheus_url:
        metrics = prometheus_source(prometheus_url, router_url, sides, {"model": model_name})
    else:
        metrics = MetricsSource(
            f"{router_url}/metrics",
            {side: f"{url}/metrics" for side, url in sides.items()},
            kpi_labels={"model": model_name},
        )
    return CanaryController(
        policy,
        LocalRouterBackend(router_url),
        metrics,
        challenger_version=challenger_version,
        # A fault proxy forwards the readiness of the model server behind it.
        ready_urls={side: f"{url}{READY['model']}" for side, url in sides.items()},
        on_promote=on_promote,
        on_rollback=on_rollback,
        log=log,
    )
