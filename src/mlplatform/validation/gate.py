"""The gate: statistics, TFDV validation against the schema (and drift), and batch checks."""

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
    ("COMPARATOR", "DRIFT"),
    ("JENSEN", "DRIFT"),
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
    previous: statistics_pb2.DatasetFeatureStatisticsList | None = None,
    now: float | None = None,
) -> tuple[list[Anomaly], statistics_pb2.DatasetFeatureStatisticsList]:
    """All anomalies of a parsed batch, and its statistics (kept for the next drift check)."""
    stats = compute_statistics(table)
    result = tfdv.validate_statistics(
        stats, schema, environment=TRAINING, previous_statistics=previous
    )
    return anomalies_from_tfdv(result) + batch_checks(table, spec, now=now), stats
