"""What the canary analysis reads: cumulative counters per side from the router's and the
model servers' /metrics (or a Prometheus federating them), and each round's deltas.

The router's metrics give requests by status and the latency histogram per upstream; each
side's model server (or the fault proxy in front of it) gives the KPI counters. Stdlib only
(+ the Prometheus text parser), so it runs in both environments.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

SIDES = ("champion", "challenger")
# Metric names shared with mlplatform.release.router (which imports them from canary).
ROUTER_REQUESTS = "mlplatform_router_requests"
ROUTER_LATENCY = "mlplatform_router_request_latency_seconds"
POSITIVES = "mlplatform_predicted_positive_total"
ROWS = "mlplatform_predicted_rows_total"


class MetricsError(RuntimeError):
    """A /metrics endpoint could not be read."""


@dataclass
class Counters:
    """Cumulative counters of one side, or (after `minus`) their increase over a round."""

    codes: dict[str, float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    positives: float = 0.0
    rows: float = 0.0

    def minus(self, prev: Counters) -> Counters:
        def d(now: float, before: float) -> float:
            return now - before if now >= before else now  # a reset (restart) starts at 0

        codes = {k: d(v, prev.codes.get(k, 0.0)) for k, v in self.codes.items()}
        buckets = {k: d(v, prev.buckets.get(k, 0.0)) for k, v in self.buckets.items()}
        return Counters(codes, buckets, d(self.positives, prev.positives), d(self.rows, prev.rows))


@dataclass(frozen=True)
class SideStats:
    """One side's numbers over one round."""

    requests: int = 0
    server_errors: int = 0
    client_errors: int = 0
    p99_ms: float | None = None
    kpi: float | None = None

    @classmethod
    def of(cls, c: Counters) -> SideStats:
        def n(pred: Callable[[str], bool]) -> int:
            return round(sum(v for k, v in c.codes.items() if pred(k)))

        p99 = quantile(0.99, c.buckets)
        return cls(
            requests=n(lambda _: True),
            server_errors=n(lambda k: not k.isdigit() or k.startswith("5")),
            client_errors=n(lambda k: k.startswith("4")),
            p99_ms=None if p99 is None else p99 * 1000,
            kpi=c.positives / c.rows if c.rows else None,
        )

    @property
    def success_rate(self) -> float:
        return 1 - self.server_errors / self.requests if self.requests else 1.0

    @property
    def client_error_rate(self) -> float:
        return self.client_errors / self.requests if self.requests else 0.0

    def line(self) -> str:
        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:.2f}ms"
        kpi = "-" if self.kpi is None else f"{self.kpi:.3f}"
        return f"n={self.requests} ok={self.success_rate:.3f} p99={p99} kpi={kpi}"


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q."""
    edges = sorted(buckets.items())
    if not edges or edges[-1][1] <= 0:
        return None
    rank, lower, below = q * edges[-1][1], 0.0, 0.0
    for le, count in edges:
        if count >= rank:
            if math.isinf(le):  # beyond the last finite bucket: its bound is all we know
                return lower
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


class MetricsSource:
    """Scrapes the router's /metrics (latency, errors per upstream) and each side's KPI URL."""

    def __init__(
        self,
        router_metrics_url: str,
        kpi_urls: Mapping[str, str] | None = None,
        kpi_labels: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.router_url = router_metrics_url
        self.kpi_urls = dict(kpi_urls or {})
        self.kpi_labels = dict(kpi_labels or {})  # e.g. {"model": "taxi"}
        self.timeout_s = timeout_s
        self._last: dict[str, Counters] | None = None

    def scrape(self) -> dict[str, Counters]:
        """Cumulative counters per side, read now."""
        out = {side: Counters() for side in SIDES}
        for s in self._samples(self.router_url):
            c = out.get(s.labels.get("upstream", ""))
            if c is None:
                continue
            if s.name == ROUTER_REQUESTS + "_total":
                code = s.labels.get("code", "")
                c.codes[code] = c.codes.get(code, 0.0) + s.value
            elif s.name == ROUTER_LATENCY + "_bucket":
                le = float(s.labels["le"])
                c.buckets[le] = c.buckets.get(le, 0.0) + s.value
        for side, url in self.kpi_urls.items():
            for s in self._samples(url):
                if any(s.labels.get(k) != v for k, v in self.kpi_labels.items()):
                    continue
                if s.name == POSITIVES:
                    out[side].positives += s.value
                elif s.name == ROWS:
                    out[side].rows += s.value
        return out

    def delta(self) -> dict[str, SideStats]:
        """Each side's numbers since the previous call (the first call only sets the baseline)."""
        now = self.scrape()
        prev, self._last = self._last, now
        return {
            side: SideStats.of(now[side].minus(prev[side]) if prev else Counters())
            for side in SIDES
        }

    def _samples(self, url: str):
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                text = resp.read().decode()
        except (OSError, ValueError) as exc:
            raise MetricsError(f"cannot read {url}: {exc}") from exc
        for family in text_string_to_metric_families(text):
            yield from family.samples


def prometheus_source(
    prometheus_url: str,
    router_url: str,
    kpi_urls: Mapping[str, str],
    kpi_labels: Mapping[str, str] | None = None,
) -> MetricsSource:
    """The same analysis read from a Prometheus that scrapes the router and both sides.

    Prometheus' federation endpoint answers in the exposition format the controller already
    parses, selected by the scrape target's `instance` (host:port of each base URL). Figures
    lag the processes by up to one scrape interval, so rounds should be several intervals long.
    """
    from urllib.parse import urlencode, urlsplit

    def federate(names: str, base_url: str) -> str:
        instance = urlsplit(base_url).netloc
        selector = f'{{__name__=~"{names}",instance="{instance}"}}'
        return f"{prometheus_url.rstrip('/')}/federate?" + urlencode({"match[]": selector})

    router_names = f"{ROUTER_REQUESTS}_total|{ROUTER_LATENCY}_bucket"
    return MetricsSource(
        federate(router_names, router_url),
        {side: federate(f"{POSITIVES}|{ROWS}", url) for side, url in kpi_urls.items()},
        kpi_labels,
    )
