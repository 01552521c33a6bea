"""The gate's schema half: statistics, TFDV validation against the schema, batch checks."""

from __future__ import annotations

import pyarrow as pa
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from mlplatform.spec import UseCase
from mlplatform.validation.checks import batch_checks
from mlplatform.validation.report import Anomaly
from mlplatform.validation.schema import TRAINING
from mlplatform.validation.statistics import compute_statistics

# TFDV reason types, by substring, to the kinds our advice and tests speak of. Order matters:
# the first match wins.
_KIND_BY_TFDV = (
    ("NEW_COLUMN", "SCHEMA_NEW_COLUMN"),
    ("MISSING_COLUMN", "SCHEMA_MISSING_COLUMN"),
    ("ENUM", "CATEGORY"),
    ("DOMAIN", "CATEGORY"),
    ("STRING_NOT", "TYPE"),
    ("NOT_INT", "TYPE"),
    ("DATA_TYPE", "TYPE"),
    ("SMALL_INT", "RANGE"),
    ("BIG_INT", "RANGE"),
    ("SMALL_FLOAT", "RANGE"),
    ("BIG_FLOAT", "RANGE"),
    ("HAS_NAN", "RANGE"),
    ("PRESENT", "NULLS"),
)


def _kind(tfdv_types: list[str]) -> str:
    for needle, kind in _KIND_BY_TFDV:
        if any(needle in t for t in tfdv_types):
            return kind
    return "OTHER"


def anomalies_from_tfdv(result: anomalies_pb2.Anomalies) -> list[Anomaly]:
    found = []
    for feature, info in sorted(result.anomaly_info.items()):
        # One entry per reason: a renamed column is two problems, and each has its own fix.
        for reason in info.reason:
            t = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            desc = reason.description or reason.short_description or info.description
            found.append(Anomaly(_kind([t]), feature, desc, (t,)))
    for reason in result.dataset_anomaly_info.reason:
        t = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
        found.append(Anomaly(_kind([t]), "", reason.description, (t,)))
    return found


def validate_table(
    table: pa.Table,
    spec: UseCase,
    schema: schema_pb2.Schema,
    now: float | None = None,
) -> tuple[list[Anomaly], statistics_pb2.DatasetFeatureStatisticsList]:
    """Schema and batch anomalies of a parsed batch, and its statistics (kept for views)."""
    stats = compute_statistics(table)
    result = tfdv.validate_statistics(stats, schema, environment=TRAINING)
    return anomalies_from_tfdv(result) + batch_checks(table, spec, now=now), stats


def judge_table(
    table: pa.Table,
    spec: UseCase,
    schema: schema_pb2.Schema,
    profile,
    seen,
    now: float | None = None,
):
    """Everything the gate decides on a parsed batch: schema and batch anomalies (TFDV), then
    drift against `profile`, overlap with `seen` row hashes, and the size rule. Returns
    (anomalies, DistributionResult, statistics)."""
    from mlplatform.validation.distribution import distribution_checks

    anomalies, stats = validate_table(table, spec, schema, now=now)
    dist = distribution_checks(table, spec, profile, seen)
    return anomalies + dist.anomalies, dist, stats
