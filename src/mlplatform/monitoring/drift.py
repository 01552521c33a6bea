"""Data drift of served traffic against the training data, per feature.

Two measurements per window of logged requests:

- `ReferenceProfile` / `drift_scores`: the platform's own score, numpy only and linear in rows
  x features. Numeric features are binned on the training deciles (plus a null bin) and compared
  with the Jensen-Shannon divergence (base 2, in [0, 1]); categorical features on the training
  categories (+ "other" + null) with the L-infinity distance, the same measures the spec's
  `drift_threshold` is written in. Decile bins follow the data; TFDV's equal-width histograms
  are stretched by outliers (a random 2k sample of the taxi file scored JS 0.37 on
  trip_seconds against the file itself), so the trigger reads this score.
- `tfdv_comparison`: TFDV's skew comparator (window vs training statistics) and drift comparator
  (window vs the previous window) per feature, on the statistics code of the validation gate and
  the use case's schema, plus the schema anomalies of the served values (range, category, type).

Which features may trigger retraining is the spec's call: those with a `drift_threshold`. The
others (calendar features move every month by design) are measured and shown, not acted on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from mlplatform.spec import ColumnType, UseCase

NUMERIC_BINS = 10
MAX_CATEGORIES = 50  # the rest share an "other" bin: a long tail must not dilute the score
DEFAULT_THRESHOLD = 0.2  # for features without a spec threshold: shown, not acted on
_EPS = 1e-12


def monitored_columns(spec: UseCase, available: list[str] | None = None) -> list[str]:
    """The spec's feature columns (present in `available` when given)."""
    names = [c.name for c in spec.feature_columns]
    return [n for n in names if available is None or n in available]


@dataclass
class FeatureProfile:
    name: str
    kind: str  # "numeric" | "categorical"
    edges: list[float] = field(default_factory=list)  # inner bin edges (numeric)
    categories: list[str] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)  # bin shares, null bin last
    threshold: float = DEFAULT_THRESHOLD
    triggers: bool = False  # the spec declared a drift_threshold for it


@dataclass
class ReferenceProfile:
    """Bins and shares of the training data, fitted once; scoring a window is then cheap."""

    features: list[FeatureProfile]

    @classmethod
    def fit(cls, df: pd.DataFrame, spec: UseCase, columns: list[str] | None = None):
        cols = columns or monitored_columns(spec, list(df.columns))
        out = []
        for name in cols:
            col = spec.column(name)
            fp = FeatureProfile(
                name,
                "numeric" if col.is_numeric else "categorical",
                threshold=col.drift_threshold or DEFAULT_THRESHOLD,
                triggers=col.drift_threshold is not None,
            )
            values = df[name]
            if col.is_numeric:
                x = pd.to_numeric(values, errors="coerce").to_numpy(
                    dtype="float64", na_value=np.nan
                )
                finite = x[~np.isnan(x)]
                qs = (
                    np.quantile(finite, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1])
                    if len(finite)
                    else []
                )
                fp.edges = sorted({float(q) for q in qs})
            else:
                counts = values.dropna().astype(str).value_counts()
                fp.categories = list(counts.index[:MAX_CATEGORIES])
            fp.reference = _shares(fp, values).tolist()
            out.append(fp)
        return cls(out)

    def to_dict(self) -> dict:
        return {"features": [asdict(f) for f in self.features]}

    @classmethod
    def from_dict(cls, data: dict) -> ReferenceProfile:
        return cls([FeatureProfile(**f) for f in data["features"]])


def _shares(fp: FeatureProfile, values: pd.Series) -> np.ndarray:
    """Share of rows per bin: value bins, then ("other" for categories), then null."""
    n = len(values)
    if fp.kind == "numeric":
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        null = np.isnan(x)
        # side="right": a value equal to an edge falls in the bin above, like np.digitize.
        idx = np.searchsorted(np.asarray(fp.edges), x[~null], side="right")
        counts = np.bincount(idx, minlength=len(fp.edges) + 1).astype("float64")
    else:
        null = values.isna().to_numpy()
        codes = pd.Categorical(values[~null].astype(str), categories=fp.categories).codes
        known = np.bincount(codes[codes >= 0], minlength=len(fp.categories)).astype("float64")
        counts = np.append(known, float((codes < 0).sum()))
    counts = np.append(counts, float(null.sum()))
    return counts / max(n, 1)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence, base 2: 0 for equal distributions, 1 for disjoint ones."""
    p, q = p / max(p.sum(), _EPS), q / max(q.sum(), _EPS)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, (kl(p) + kl(q)) / 2)


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    measure: str  # "jensen_shannon" | "l_infinity"
    score: float
    threshold: float
    triggers: bool

    @property
    def drifted(self) -> bool:
        return self.score > self.threshold


def drift_scores(profile: ReferenceProfile, window: pd.DataFrame) -> list[FeatureDrift]:
    """Each profiled feature's distance between the window and the training data."""
    out = []
    for fp in profile.features:
        if fp.name not in window:
            continue
        cur = _shares(fp, window[fp.name])
        ref = np.asarray(fp.reference)
        if fp.kind == "numeric":
            measure, score = "jensen_shannon", js_divergence(ref, cur)
        else:
            measure, score = "l_infinity", float(np.max(np.abs(ref - cur)))
        out.append(FeatureDrift(fp.name, measure, round(score, 6), fp.threshold, fp.triggers))
    return out


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


def monitoring_schema(spec: UseCase, columns: list[str], profile: ReferenceProfile | None = None):
    """The use case's schema restricted to served features, with skew and drift comparators."""
    from mlplatform.validation.schema import build_schema

    schema = build_schema(spec)
    keep = [f for f in schema.feature if f.name in columns]
    del schema.feature[:]
    schema.feature.extend(keep)
    thresholds = {f.name: f.threshold for f in profile.features} if profile else {}
    for f in schema.feature:
        col = spec.column(f.name)
        t = thresholds.get(f.name, col.drift_threshold or DEFAULT_THRESHOLD)
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
    profile: ReferenceProfile | None = None,
) -> TfdvComparison:
    """TFDV's comparators and schema checks on one window's statistics."""
    import tensorflow_data_validation as tfdv

    schema = monitoring_schema(spec, columns, profile)
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
