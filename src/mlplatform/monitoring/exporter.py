"""Monitoring results as Prometheus metrics: a registry of gauges served over HTTP (and
written as a text file), which the Prometheus config scrapes as the `monitoring` job.

Label `model` is the use case (the model server's --model-name), so alert rules can join these
gauges with the servers' own metrics.

Drift scores are exported for every monitored feature (people read them all), but a threshold
only for the features that may trigger a retraining (the spec gives them a `retrain_drift`,
ADR 0012). The `FeatureDrift` alert compares a score with the threshold of the same labels, so a
calendar feature such as `trip_start_month`, which moves every month by design, cannot fire it.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    start_http_server,
    write_to_textfile,
)

from mlplatform.data.drift import FeatureDrift


class MonitoringExporter:
    """Gauges for drift, prediction confidence, labelled quality, KPI and trigger counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.drift = Gauge(
            "mlplatform_feature_drift_score",
            "Distance of the latest window from the training data, per feature",
            ["model", "feature", "comparator"],
            registry=r,
        )
        self.drift_threshold = Gauge(
            "mlplatform_feature_drift_threshold",
            "Drift threshold at the window's size (spec retrain_drift or sampling noise, the "
            "larger) of a feature that may trigger retraining (no series otherwise)",
            ["model", "feature", "comparator"],
            registry=r,
        )
        self.confidence = Gauge(
            "mlplatform_window_prediction_confidence",
            "Mean |2p - 1| of the latest window's predictions",
            ["model", "version"],
            registry=r,
        )
        self.reference_mean = Gauge(
            "mlplatform_reference_prediction_mean",
            "Mean predicted probability on the training data's held-out rows",
            ["model"],
            registry=r,
        )
        self.metric = Gauge(
            "mlplatform_model_metric",
            "Quality on labelled traffic (delayed labels joined by request id)",
            ["model", "version", "metric", "slice"],
            registry=r,
        )
        self.metric_floor = Gauge(
            "mlplatform_model_metric_floor",
            "Quality under which the ModelQualityBelowFloor alert fires",
            ["model", "metric"],
            registry=r,
        )
        self.kpi = Gauge(
            "mlplatform_business_kpi",
            "The use case's business KPI on labelled traffic (spec kpi)",
            ["model", "version", "kpi"],
            registry=r,
        )
        self.labels_joined = Gauge(
            "mlplatform_labels_joined",
            "Logged predictions with a label in the latest performance window",
            ["model"],
            registry=r,
        )
        self.triggers = Counter(
            "mlplatform_retraining_triggers",
            "Retraining triggers fired, by reason",
            ["model", "reason"],
            registry=r,
        )

    def set_drift(
        self, model: str, scores: Iterable[FeatureDrift], comparator: str = "skew"
    ) -> None:
        """Export each feature's score; a threshold only where the feature `triggers`."""
        for s in scores:
            self.drift.labels(model, s.feature, comparator).set(s.score)
            if s.triggers:
                self.drift_threshold.labels(model, s.feature, comparator).set(s.threshold)
            else:  # a threshold left from an earlier profile would let the alert fire on it
                with suppress(KeyError):  # KeyError: no such series, nothing to remove
                    self.drift_threshold.remove(model, s.feature, comparator)

    def serve(self, port: int, addr: str = "127.0.0.1"):
        """Serve /metrics in a background thread; returns (server, thread)."""
        return start_http_server(port, addr=addr, registry=self.registry)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)


def metrics_file(monitoring_dir: Path) -> Path:
    """Where a scheduled monitoring run leaves its gauges for `mlplatform.monitoring.
    metrics_files` to serve (the cluster's drift exporter)."""
    return Path(monitoring_dir) / "metrics.prom"


def write_window_metrics(
    path: Path,
    model: str,
    drift: Iterable[FeatureDrift],
    confidence: float | None,
    version: str,
    performance: dict,
    kpi_name: str,
    trigger_counts: dict[str, int],
) -> None:
    """One monitoring run's results as a Prometheus text file: drift per feature (thresholds
    only where a feature triggers), confidence of the served `version`, labelled quality and KPI
    per version (`performance`: "version|slice" -> metrics) and the triggers fired so far."""
    exp = MonitoringExporter()
    exp.set_drift(model, drift)
    if confidence is not None:
        exp.confidence.labels(model, version).set(confidence)
    for key, metrics in performance.items():
        ver, slice_ = key.split("|", 1)
        for name in ("auc", "accuracy", "brier", "ece"):
            if metrics.get(name) is not None:
                exp.metric.labels(model, ver, name, slice_).set(metrics[name])
        if slice_ == "overall":
            if metrics.get("kpi") is not None:
                exp.kpi.labels(model, ver, kpi_name).set(metrics["kpi"])
            exp.labels_joined.labels(model).set(metrics.get("n", 0))
    for reason, n in trigger_counts.items():
        exp.triggers.labels(model, reason).inc(n)
    exp.write(path)
