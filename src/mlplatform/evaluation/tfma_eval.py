"""Sliced evaluation of a model's predictions with TFMA, model-agnostically.

TFMA reads a DataFrame of label + prediction + slice columns (`tfma.analyze_raw_data`), so
every model family is evaluated the same way, from its held-out predictions. TFMA is imported
inside `evaluate_predictions`: importing TensorFlow takes seconds, and this module's result
types are also used by code (the fairness gate, reports) that never runs TFMA.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from types import ModuleType

import pandas as pd

from mlplatform.evaluation.slicing import (
    EARLIER,
    MISSING,
    NO,
    RECENT,
    RECENT_COLUMN,
    YES,
    add_slice_columns,
    band_labels,
    edge_column,
    slice_columns,
)
from mlplatform.spec import UseCase

log = logging.getLogger(__name__)

OVERALL = "overall"
METRIC_COLUMNS = [
    "example_count",
    "auc",
    "accuracy",
    "precision",
    "recall",
    "fpr",
    "fnr",
    "calibration",
    "mean_label",
    "mean_prediction",
]
TABLE_COLUMNS = ["slice_column", "slice_value", *METRIC_COLUMNS]
# TFMA's output names -> the table's columns (the others keep their TFMA name).
_RENAMES = {"binary_accuracy": "accuracy"}


@dataclass(frozen=True)
class EvaluationResult:
    """Sliced metrics of one model on one evaluation set: one row per (slice, value)."""

    table: pd.DataFrame
    threshold: float
    seconds: float  # wall time of the TFMA run, recorded because it dominates evaluation
    output_path: str | None = None

    @property
    def overall(self) -> dict[str, float]:
        """The metrics over all rows."""
        return self.slice(OVERALL, OVERALL)

    def slice(self, column: str, value: str) -> dict[str, float]:
        """The metrics of one slice, e.g. `slice("sex", "2")`; KeyError lists what exists."""
        t = self.table
        rows = t[(t["slice_column"] == column) & (t["slice_value"] == str(value))]
        if rows.empty:
            known = sorted(t.loc[t["slice_column"] == column, "slice_value"])
            where = f"values of {column!r} are {known}" if known else "no such slice column"
            raise KeyError(f"no slice {column}={value!r}: {where}")
        return {k: _scalar(v) for k, v in rows.iloc[0][METRIC_COLUMNS].items()}

    def to_json(self) -> str:
        """The whole table as JSON (NaN, an undefined metric, becomes null)."""
        rows = [{k: _json_safe(v) for k, v in r.items()} for r in self.table.to_dict("records")]
        return json.dumps({"threshold": self.threshold, "slices": rows}, indent=2)

    def to_markdown(self) -> str:
        """The table as GitHub markdown, rates to three decimals."""
        return markdown_table(self.table)


def evaluate_predictions(
    df: pd.DataFrame,
    spec: UseCase,
    label: str,
    prediction_col: str = "probability",
    threshold: float = 0.5,
    recent_start: pd.Timestamp | None = None,
    output_path: str | None = None,
) -> EvaluationResult:
    """Evaluate a binary classifier's probabilities overall and on every slice of the spec.

    `df` holds the evaluation rows with their raw columns, the label and the predicted
    probability of class 1. A row counts as predicted positive when its probability is
    strictly above `threshold` (TFMA's convention). Rows without a label are dropped with a
    warning; missing or out-of-range probabilities are an error. TFMA's files go to
    `output_path` (a temporary folder, removed afterwards, when None).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not a probability in [0, 1]")
    import tensorflow_model_analysis as tfma  # slow import, see the module docstring

    data = _tfma_frame(df, spec, label, prediction_col, recent_start)
    cols = slice_columns(spec, has_recent=recent_start is not None)
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key=label, prediction_key=prediction_col)],
        metrics_specs=[tfma.MetricsSpec(metrics=_metric_configs(tfma, threshold))],
        slicing_specs=[tfma.SlicingSpec(), *(tfma.SlicingSpec(feature_keys=[c]) for c in cols)],
    )
    start = time.perf_counter()
    if output_path is None:
        with tempfile.TemporaryDirectory(prefix="tfma-") as tmp:
            result = tfma.analyze_raw_data(data=data, eval_config=config, output_path=tmp)
    else:
        result = tfma.analyze_raw_data(data=data, eval_config=config, output_path=output_path)
    seconds = time.perf_counter() - start
    log.info("TFMA evaluated %d rows on %d slice columns in %.1f s", len(data), len(cols), seconds)
    table = _tidy(result.slicing_metrics, cols, _fixed_orders(spec))
    return EvaluationResult(table, threshold, seconds, output_path)


def _tfma_frame(
    df: pd.DataFrame,
    spec: UseCase,
    label: str,
    prediction_col: str,
    recent_start: pd.Timestamp | None,
) -> pd.DataFrame:
    """Only what TFMA reads, in types it accepts: float label/prediction, string slices."""
    for col in (label, prediction_col):
        if col not in df.columns:
            raise KeyError(f"the evaluation data has no column {col!r}")
    unlabelled = df[label].isna()
    if unlabelled.any():
        # TFMA fails deep inside Beam on a missing label ("only length-1 arrays ...").
        log.warning("dropping %d of %d rows without a label %r", unlabelled.sum(), len(df), label)
        df = df[~unlabelled]
    if df.empty:
        raise ValueError("no labelled rows to evaluate")
    y = pd.to_numeric(df[label], errors="coerce").astype("float64")
    if not y.isin([0.0, 1.0]).all():
        raise ValueError(f"label {label!r} must be 0/1, found {sorted(y.unique())[:10]}")
    p = pd.to_numeric(df[prediction_col], errors="coerce").astype("float64")
    bad = p.isna() | (p < 0) | (p > 1)
    if bad.any():
        # TFMA bins probabilities in [0, 1]; anything else is a scoring bug, not a value.
        raise ValueError(
            f"{bad.sum()} predictions in {prediction_col!r} are missing or outside [0, 1], "
            f"e.g. {df.loc[bad, prediction_col].head(3).tolist()}"
        )
    sliced = add_slice_columns(df, spec, recent_start)
    cols = slice_columns(spec, has_recent=recent_start is not None)
    # Other columns stay out: TFMA cannot convert e.g. a tz-aware event_timestamp column.
    out = sliced[cols].astype(str)
    out[label] = y.to_numpy()
    out[prediction_col] = p.to_numpy()
    return out.reset_index(drop=True)


def _metric_configs(tfma: ModuleType, threshold: float) -> list:
    """The metrics of the table; confusion-matrix ones at exactly `threshold`.

    With an explicit single threshold TFMA counts the confusion matrix exactly (no histogram)
    and names the metric without an `@threshold` suffix. `FPR`/`FNR` are TFMA's aliases of
    `FallOut`/`MissRate`. AUC keeps TFMA's 10k-bucket approximation.
    """
    at = json.dumps({"thresholds": [threshold]})
    return [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="AUC"),
        tfma.MetricConfig(class_name="BinaryAccuracy", config=json.dumps({"threshold": threshold})),
        tfma.MetricConfig(class_name="Precision", config=at),
        tfma.MetricConfig(class_name="Recall", config=at),
        tfma.MetricConfig(class_name="FPR", config=at),
        tfma.MetricConfig(class_name="FNR", config=at),
        tfma.MetricConfig(class_name="Calibration"),
        tfma.MetricConfig(class_name="MeanLabel"),
        tfma.MetricConfig(class_name="MeanPrediction"),
    ]


def _tidy(slicing_metrics: list, cols: list[str], fixed: dict[str, list[str]]) -> pd.DataFrame:
    """TFMA's [(slice key, {output: {sub key: {metric: {"doubleValue": x}}}})] as a table."""
    rows = []
    for key, by_output in slicing_metrics:
        if key == ():
            column, value = OVERALL, OVERALL
        else:
            ((column, value),) = key  # one feature per slicing spec
        metrics = by_output[""][""]  # single output, no sub key: a binary classifier
        row = {"slice_column": column, "slice_value": str(value)}
        for name, v in metrics.items():
            # Undefined values arrive as the JSON strings "NaN" / "Infinity": float() reads them.
            row[_RENAMES.get(name, name)] = float(v.get("doubleValue", math.nan))
        rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    table["example_count"] = table["example_count"].round().astype("int64")
    # TFMA reports AUC 0.0 for a slice with one class; it is undefined there.
    one_class = table["mean_label"].isin([0.0, 1.0])
    table.loc[one_class, "auc"] = math.nan
    col_rank = {c: i for i, c in enumerate([OVERALL, *cols])}
    keys = [
        (col_rank.get(c, len(col_rank)), _value_key(v, fixed.get(c)))
        for c, v in zip(table["slice_column"], table["slice_value"], strict=True)
    ]
    order = sorted(range(len(table)), key=keys.__getitem__)
    return table.iloc[order].reset_index(drop=True)


def _fixed_orders(spec: UseCase) -> dict[str, list[str]]:
    """Slices whose values have a natural order: bands low to high, recent first, yes first."""
    orders = {b.name: band_labels(b) for b in spec.slices.bands}
    orders[RECENT_COLUMN] = [RECENT, EARLIER]
    orders.update({edge_column(e): [YES, NO] for e in spec.slices.edge_cases})
    return orders


def _value_key(value: str, fixed: list[str] | None) -> tuple[int, float, str]:
    """Sort key of a slice value: fixed order, else numeric codes as numbers; missing last."""
    if value == MISSING:
        return (2, 0.0, "")
    if fixed is not None and value in fixed:
        return (0, float(fixed.index(value)), "")
    try:
        return (0, float(value), "")  # "2" before "10"
    except ValueError:
        return (1, 0.0, value)


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a GitHub markdown table (tabulate, pandas' renderer, is not installed)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |"]
    lines.append("|" + "|".join("---" for _ in df.columns) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _scalar(v: object) -> object:
    """numpy scalars as Python ones (an undefined metric stays NaN)."""
    return v.item() if hasattr(v, "item") else v


def _json_safe(v: object) -> object:
    v = _scalar(v)
    return None if isinstance(v, float) and math.isnan(v) else v
