"""Preprocessing fitted on training data and shipped inside the packaged model.

Pure pandas/numpy on purpose: the same object runs in the pipeline, in the MLflow pyfunc and in
the serving environment, so what a model saw in training is exactly what it sees when served.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from mlplatform.features.tables import aggregate_column_names
from mlplatform.spec import ColumnType, UseCase
from mlplatform.training.columns import Columns

OOV = 0  # code of missing and unseen categories; known categories are 1..n
MAX_VOCAB = 200  # rare categories beyond this share the out-of-vocabulary code


def model_inputs(spec: UseCase) -> tuple[list[str], list[str]]:
    """(numeric, categorical) input columns: the spec's features plus Feast aggregates."""
    numeric = [c.name for c in spec.feature_columns if c.is_numeric]
    categorical = [
        c.name for c in spec.feature_columns if c.type in (ColumnType.CATEGORY, ColumnType.STRING)
    ]
    for agg in spec.features.aggregates:
        numeric.extend(aggregate_column_names(agg))
    return numeric, categorical


@dataclass
class Preprocessor:
    """Imputation, scaling and category vocabularies learned from the training rows."""

    numeric: list[str]
    categorical: list[str]
    medians: dict[str, float] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    vocab: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, df: pd.DataFrame, spec: UseCase) -> Preprocessor:
        numeric, categorical = model_inputs(spec)
        missing = [c for c in numeric + categorical if c not in df.columns]
        if missing:
            raise KeyError(f"training data lacks model inputs {missing}")
        p = cls(numeric=numeric, categorical=categorical)
        for c in numeric:
            x = pd.to_numeric(df[c], errors="coerce").astype("float64")
            med = float(x.median()) if x.notna().any() else 0.0
            filled = x.fillna(med)
            p.medians[c] = med
            p.means[c] = float(filled.mean())
            p.stds[c] = float(filled.std()) or 1.0  # a constant column scales by 1
        for c in categorical:
            counts = df[c].dropna().astype(str).value_counts()
            p.vocab[c] = sorted(counts.index[:MAX_VOCAB].tolist())
        return p

    # -- transforms ---------------------------------------------------------------------

    def numeric_raw(self, df: pd.DataFrame | Columns) -> np.ndarray:
        """Numeric inputs as float64 with NaN kept (trees handle missing values natively)."""
        if not self.numeric:
            return np.zeros((len(df), 0))
        cols = [df[c] for c in self.numeric]
        if all(col.dtype == np.float64 for col in cols):
            # The serving contract's rows: stacking the columns' own arrays is ~6x cheaper
            # than selecting a sub-frame first (a third of a single-row prediction).
            return np.column_stack([np.asarray(col) for col in cols])
        if isinstance(df, Columns):
            df = df.to_frame()
        try:  # one vectorised conversion for mixed dtypes (nullable ints in training)
            return df[self.numeric].to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError):  # text among numbers: non-numbers become missing
            cols = [pd.to_numeric(df[c], errors="coerce").astype("float64") for c in self.numeric]
            return np.column_stack(cols)

    def numeric_scaled(self, df: pd.DataFrame | Columns) -> np.ndarray:
        """Median-imputed, standardized numeric inputs (linear and neural models)."""
        x = self.numeric_raw(df)
        med = np.array([self.medians[c] for c in self.numeric])
        mu = np.array([self.means[c] for c in self.numeric])
        sd = np.array([self.stds[c] for c in self.numeric])
        x = np.where(np.isnan(x), med, x)
        return (x - mu) / sd

    def codes(self, df: pd.DataFrame | Columns) -> np.ndarray:
        """Categorical inputs as int codes; missing and unseen values map to OOV."""
        out = np.zeros((len(df), len(self.categorical)), dtype=np.int64)
        for j, c in enumerate(self.categorical):
            index = self._index(c)
            values = np.asarray(df[c], dtype=object)  # a Series or a Columns array
            out[:, j] = [OOV if _missing(v) else index.get(str(v), OOV) for v in values]
        return out

    def _index(self, column: str) -> dict[str, int]:
        cache = self.__dict__.setdefault("_indexes", {})
        if column not in cache:
            cache[column] = {v: i + 1 for i, v in enumerate(self.vocab[column])}
        return cache[column]

    def vocab_sizes(self) -> list[int]:
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    def one_hot(self, df: pd.DataFrame | Columns) -> np.ndarray:
        """Scaled numerics followed by one-hot categories (OOV gets its own column)."""
        blocks = [self.numeric_scaled(df)]
        codes = self.codes(df)
        for j, size in enumerate(self.vocab_sizes()):
            block = np.zeros((len(df), size))
            block[np.arange(len(df)), codes[:, j]] = 1.0
            blocks.append(block)
        return np.hstack(blocks)

    @property
    def inputs(self) -> list[str]:
        return self.numeric + self.categorical

    # -- persistence --------------------------------------------------------------------

    def to_json(self) -> str:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        return cls(**json.loads(text))


def _missing(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)
