"""Data drift of served traffic against the training data, per feature.

Two measurements per window of logged requests:

- `served_drift`: the platform's one drift measure (mlplatform.data.drift, shared with the
  validation gate): decile bins + a null bin and Jensen-Shannon for numbers, shares and
  L-infinity for categories, judged against the larger of the spec's threshold and what
  sampling alone reaches at the window's size. Features with a `retrain_drift` in the spec may
  trigger retraining; the others (calendar features move every month by design) are measured
  and shown against the gate's threshold, not acted on.
- `tfdv_comparison`: TFDV's skew comparator (window vs training statistics) and drift comparator
  (window vs the previous window) per feature, on the statistics code of the validation gate and
  the use case's schema, plus the schema anomalies of the served values (range, category, type).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlplatform.data.drift import FeatureDrift, ReferenceProfile, drift_scores
from mlplatform.spec import ColumnType, UseCase


def monitored_columns(spec: UseCase, available: list[str] | None = None) -> list[str]:
    """The spec's feature columns (present in `available` when given)."""
    names = [c.name for c in spec.feature_columns]
    return [n for n in names if available is None or n in available]


def served_drift(
    profile: ReferenceProfile, window: pd.DataFrame, spec: UseCase
) -> list[FeatureDrift]:
    """Each profiled feature's drift in a window of served traffic; `triggers` on those the
    spec gives a `retrain_drift`."""
    return drift_scores(
        profile, window, spec.retrain_thresholds(), spec.drift.alpha, spec.retrain_features()
    )


# --- TFDV ------------------------------------------------------------------------------------


def typed_table(df: pd.DataFrame, spec: UseCase, columns: list[str]):
    """An Arrow table of `columns` in the spec's types (served numbers arrive as doubles)."""
    import pyarrow as pa

    arrays = {}
    for name in columns:
        col = spec.column(name)
        s = df[name]
        if col.type is ColumnType.INT:
            s = pd.to_numeric(s, errors="coerce").round().astype("Int64")
            arrays[name] = pa.array(s.to_numpy(dtype="float64", na_value=np.nan), from_pandas=True)
            arrays[name] = arrays[name].cast(pa.int64())
        elif col.type is ColumnType.FLOAT:
            arrays[name] = pa.array(pd.to_numeric(s, errors="coerce"), from_pandas=True)
        else:
            arrays[name] = pa.array(s.astype("object").where(s.notna(), None), pa.string())
    return pa.table(arrays)


def monitoring_schema(spec: UseCase, columns: list[str]):
    """The use case's schema restricted to served features, with skew and drift comparators."""
    from mlplatform.validation.schema import build_schema

    schema = build_schema(spec)
    keep = [f for f in schema.feature if f.name in columns]
    del schema.feature[:]
    schema.feature.extend(keep)
    thresholds = spec.retrain_thresholds()
    for f in schema.feature:
        col = spec.column(f.name)
        t = thresholds.get(f.name, spec.drift.gate_threshold)
        for comp in (f.skew_comparator, f.drift_comparator):
            if col.is_numeric:
                comp.jensen_shannon_divergence.threshold = t
            else:
                comp.infinity_norm.threshold = t
    return schema


@dataclass(frozen=True)
class TfdvComparison:
    skew: dict[str, float]  # feature -> TFDV skew measurement (window vs training)
    drift: dict[str, float]  # feature -> TFDV drift measurement (window vs previous window)
    anomalies: dict[str, str]  # feature -> TFDV's description (schema, skew or drift)


def tfdv_comparison(
    spec: UseCase,
    columns: list[str],
    training_stats,
    window_stats,
    previous_stats=None,
) -> TfdvComparison:
    """TFDV's comparators and schema checks on one window's statistics."""
    import tensorflow_data_validation as tfdv

    schema = monitoring_schema(spec, columns)
    # Skew: training statistics as `statistics`, the served window as `serving_statistics`.
    skew_res = tfdv.validate_statistics(training_stats, schema, serving_statistics=window_stats)
    # The window itself: schema anomalies of served values, and drift from the previous window.
    win_res = tfdv.validate_statistics(window_stats, schema, previous_statistics=previous_stats)
    anomalies = {k: v.description for k, v in win_res.anomaly_info.items()}
    return TfdvComparison(
        _measurements(skew_res, "skew_measurements"),
        _measurements(win_res, "drift_measurements") if previous_stats is not None else {},
        anomalies,
    )


def _measurements(result, field_name: str) -> dict[str, float]:
    out = {}
    for info in result.drift_skew_info:
        values = [m.value for m in getattr(info, field_name)]
        if values:
            out[".".join(info.path.step)] = round(float(max(values)), 6)
    return out
