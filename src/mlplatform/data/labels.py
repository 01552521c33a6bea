"""The label in the data's own vocabulary mapped to the 0/1 a classifier learns: the one place.

Raw batches keep their labels as sent (`>50K`, `bad`, `True`): the gate judges them against
the spec's declared classes, and every reader that needs numbers (the feature build, hence
training and evaluation; delayed labels in monitoring) goes through `encode_labels`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from mlplatform.spec import BINARY_SPELLINGS, Label, UseCase


class LabelError(ValueError):
    """A label value the spec does not declare; the message names it and the column."""


def encode_labels(label: Label, values: pd.Series | Iterable) -> pd.Series:
    """0/1 as pandas Int64 (a missing label stays missing), refusing undeclared values."""
    s = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    present = s.notna()
    if label.positive is not None:
        text = s.astype("string")
        out = (text == label.positive).astype("Int64")
        return out.where(present, pd.NA)
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("Int64")
    if pd.api.types.is_numeric_dtype(s.dtype):
        bad = present & ~s.isin([0, 1])
        if bad.any():
            _refuse(label, s[bad])
        return s.astype("Int64")
    text = s.astype("string").str.strip().str.lower()
    bad = present & ~text.isin(BINARY_SPELLINGS)
    if bad.any():
        _refuse(label, s[bad])
    return text.isin(["1", "true"]).astype("Int64").where(present, pd.NA)


def _refuse(label: Label, bad: pd.Series) -> None:
    seen = sorted({str(v) for v in bad.head(1000)})[:5]
    raise LabelError(
        f"label {label.column!r}: {len(bad)} value(s) are not 0/1 or true/false, e.g. {seen}; "
        f"if the label is in its own vocabulary, name the positive class in the spec: "
        f"label: {{column: {label.column}, positive: <value>}}"
    )


def class_names(spec: UseCase) -> tuple[str, str]:
    """(negative, positive) as a reader says them: the data's own words, or "0"/"1"."""
    label = spec.label_spec
    if label.positive is None:
        return "0", "1"
    others = [c for c in (spec.column(label.column).categories or ()) if c != label.positive]
    negative = others[0] if len(others) == 1 else f"not {label.positive}"
    return negative, label.positive


def decode(classes: tuple[str, str], predictions) -> np.ndarray:
    """0/1 predictions as the label's (negative, positive) names: the one mapping that the
    packaged model's `class` column, the server's responses and reports all use."""
    return np.asarray(classes, dtype=object)[np.asarray(predictions, dtype=np.int64)]


def decode_predictions(spec: UseCase, predictions: np.ndarray) -> np.ndarray:
    """0/1 predictions back in the label's vocabulary (what a served response can report)."""
    return decode(class_names(spec), predictions)
