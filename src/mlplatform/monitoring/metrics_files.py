"""The drift exporter of a cluster: serves the gauges scheduled monitoring runs leave on the home
volume, so Prometheus scrapes drift, confidence, quality, KPI and triggers like any server.

A monitoring run is a pipeline task that ends; what it measured must outlive it for the
`FeatureDrift`, `LowConfidence` and quality alerts to fire. Each run writes
`<home>/<usecase>/monitoring/metrics.prom` (mlplatform.monitoring.exporter); this process reads
every such file at each scrape, merges the metric families of all use cases (a family may appear
in several files; Prometheus refuses a text page that declares it twice) and adds each file's
age, so a monitoring schedule that stopped is visible too:

    python -m mlplatform.monitoring.metrics_files \
        --glob '/data/mlplatform/*/monitoring/metrics.prom'

Needs only prometheus_client: it runs in the serving image beside the payload logger.
"""

from __future__ import annotations

import argparse
import glob
import logging
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)


class MetricsFilesCollector:
    """Prometheus collector over the text files matching `pattern`, read at each scrape."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def files(self) -> list[Path]:
        return [Path(p) for p in sorted(glob.glob(self.pattern))]

    def collect(self):
        families: dict[str, Metric] = {}
        age = GaugeMetricFamily(
            "mlplatform_monitoring_file_age_seconds",
            "Seconds since a monitoring run last wrote its metrics file",
            labels=["model"],
        )
        now = time.time()
        for path in self.files():
            try:
                text = path.read_text()
                parsed = list(text_string_to_metric_families(text))
                mtime = path.stat().st_mtime
            except (OSError, ValueError) as exc:  # a file being replaced, or not Prometheus text
                log.warning("%s skipped: %s", path, exc)
                continue
            # <home>/<usecase>/monitoring/metrics.prom: the use case names the file's model.
            age.add_metric([path.parent.parent.name], now - mtime)
            for fam in parsed:
                into = families.get(fam.name)
                if into is None:
                    families[fam.name] = fam
                elif into.type == fam.type:
                    into.samples.extend(fam.samples)
                else:
                    log.warning("%s: %s is a %s here, a %s elsewhere: skipped", path, fam.name,
                                fam.type, into.type)
        yield from families.values()
        yield age


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mlplatform.monitoring.metrics_files",
        description="Serve the metrics files of scheduled monitoring runs on /metrics.",
    )
    ap.add_argument(
        "--glob",
        default="/data/mlplatform/*/monitoring/metrics.prom",
        help="files to serve, a shell pattern (default: every use case on the home volume)",
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9400)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    registry = CollectorRegistry()
    registry.register(MetricsFilesCollector(args.glob))
    server, _thread = start_http_server(args.port, addr=args.host, registry=registry)
    log.info("serving %s on http://%s:%d/metrics", args.glob, args.host, args.port)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
