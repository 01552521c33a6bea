"""Model performance once labels arrive: delayed labels joined to logged predictions by
request id, quality per model version and per slice of the spec, and the business KPI.

Labels come later than predictions (a tip is known when the trip ends, a default a month
later); they are appended to a labels log (`LabelLog`, JSON lines of request id, row, label,
time) and joined here with the request log on (request_id, row).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.data.labels import encode_labels
from mlplatform.spec import Label, UseCase

MIN_SLICE_ROWS = 50  # a slice's metrics on fewer labelled rows are noise: not reported
CALIBRATION_BINS = 10


class LabelLog:
    """Labels as they arrive: one JSON line per (request_id, row)."""

    def __init__(self, path: Path, label: Label | None = None) -> None:
        self.path = Path(path)
        self.label = label  # the spec's label: values may come in its own vocabulary

    def append(self, labels: Iterable[dict]) -> int:
        """Append {"request_id", "row" (default 0), "label" (0/1, or the spec's class
        names), "ts"}; returns the count. Nothing is written unless every item is valid."""
        lines = []
        for i, item in enumerate(labels):
            label = self._encode(item.get("label"))
            if label not in (0, 1) or not item.get("request_id"):
                raise ValueError(
                    f"labels[{i}]: need request_id and a 0/1 label"
                    f"{self._vocabulary()}, got {json.dumps(item)[:200]}"
                )
            lines.append(
                json.dumps(
                    {
                        "request_id": str(item["request_id"]),
                        "row": int(item.get("row", 0)),
                        "label": int(label),
                        "ts": float(item.get("ts", 0.0)),
                    }
                )
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write("".join(line + "\n" for line in lines))
        return len(lines)

    def _encode(self, value) -> int | None:
        if value is None or self.label is None or self.label.positive is None:
            return int(value) if value in (0, 1, True, False) else None
        try:
            return int(encode_labels(self.label, [value]).iloc[0])
        except (ValueError, TypeError):
            return None

    def _vocabulary(self) -> str:
        if self.label is None or self.label.positive is None:
            return ""
        return f" (or a class of {self.label.column!r}; positive {self.label.positive!r})"

    def frame(self) -> pd.DataFrame:
        if not self.path.exists():
            return pd.DataFrame(columns=["request_id", "row", "label", "label_ts"])
        df = pd.read_json(self.path, lines=True, dtype={"request_id": str})
        # A label sent twice keeps its last value (a correction), never two rows.
        df = df.drop_duplicates(["request_id", "row"], keep="last")
        return df.rename(columns={"ts": "label_ts"})


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Logged predictions that have a label, with a `label` column."""
    if predictions.empty or labels.empty:
        return predictions.iloc[0:0].assign(label=pd.Series(dtype="int64"))
    left = predictions.assign(request_id=predictions["request_id"].astype(str))
    return left.merge(labels, on=["request_id", "row"], how="inner", validate="many_to_one")


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the rank statistic (ties share ranks); NaN with a single class."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS):
    """Mean |observed rate - mean probability| over equal-width bins, weighted by rows."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / len(y)) if len(y) else math.nan


def kpi_value(spec: UseCase, df: pd.DataFrame) -> float | None:
    """The spec's business KPI on labelled rows (None when the spec defines no computable KPI)."""
    kpi = spec.kpi
    if kpi is None or kpi.kind is None or df.empty:
        return None
    y = df["label"].to_numpy().astype(int)
    flagged = df["prediction"].to_numpy().astype(int) == 1
    if kpi.kind == "positive_recall":
        return float(flagged[y == 1].mean()) if (y == 1).any() else None
    exposure = pd.to_numeric(df[kpi.exposure_column], errors="coerce").fillna(0).to_numpy()
    missed = (y == 1) & ~flagged
    loss = (exposure * missed).sum() * kpi.loss_given_default + kpi.review_cost * flagged.sum()
    return float(loss / len(df))


def quality(spec: UseCase, df: pd.DataFrame) -> dict:
    """n, AUC, accuracy, Brier score, calibration error, rates and the KPI of labelled rows."""
    y = df["label"].to_numpy().astype(int)
    p = df["probability"].to_numpy().astype(float)
    pred = df["prediction"].to_numpy().astype(int)
    if not len(y):
        return {"n": 0}
    return {
        "n": len(y),
        "auc": auc(y, p),
        "accuracy": float((pred == y).mean()),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(y, p),
        "label_rate": float(y.mean()),
        "mean_probability": float(p.mean()),
        "kpi": kpi_value(spec, df),
    }


@dataclass(frozen=True)
class PerformanceRow:
    version: str
    slice: str  # "overall" or "<column>=<value>"
    metrics: dict


def performance_table(spec: UseCase, labelled: pd.DataFrame) -> list[PerformanceRow]:
    """Quality per model version, overall and per slice of the spec (slices with enough rows)."""
    from mlplatform.evaluation.slicing import SliceError, add_slice_columns, slice_columns

    rows: list[PerformanceRow] = []
    if labelled.empty:
        return rows
    try:
        sliced = add_slice_columns(labelled, spec, None)
        columns = [c for c in slice_columns(spec, has_recent=False) if c in sliced]
    except SliceError:  # a slice's column is not among the served features: overall only
        sliced, columns = labelled, []
    for version, part in sliced.groupby("version", sort=True):
        rows.append(PerformanceRow(str(version), "overall", quality(spec, part)))
        for col in columns:
            for value, group in part.groupby(col, sort=True):
                if len(group) >= MIN_SLICE_ROWS:
                    rows.append(
                        PerformanceRow(str(version), f"{col}={value}", quality(spec, group))
                    )
    return rows


def confidence(probabilities: Iterable[float]) -> float:
    """Mean |2p - 1|: 1 when every prediction is certain, 0 when all sit at 0.5."""
    p = np.asarray(list(probabilities), dtype=float)
    return float(np.mean(np.abs(2 * p - 1))) if len(p) else math.nan
