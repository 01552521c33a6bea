"""Rows held as one typed numpy array per column: what the preprocessing reads, without pandas.

The model server's contract builds exactly the arrays the signature asks for (float64 numbers
with NaN for nulls, object arrays of text with None), so wrapping them in a DataFrame only to
take the columns out again cost ~40% of a single-row prediction's CPU (ADR 0019). The
Preprocessor accepts either this or a DataFrame; `to_frame()` gives the DataFrame for anything
else (MLflow's own predict, batch outputs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class Columns:
    """Equal-length column arrays by name; `len()` is the number of rows, as for a frame."""

    __slots__ = ("_arrays", "_rows")

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) > 1:
            sizes = {k: len(a) for k, a in arrays.items()}
            raise ValueError(f"columns differ in length: {sizes}")
        self._arrays = arrays
        self._rows = lengths.pop() if lengths else 0

    @property
    def columns(self) -> list[str]:
        return list(self._arrays)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __contains__(self, name: object) -> bool:
        return name in self._arrays

    def __len__(self) -> int:
        return self._rows

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._arrays, copy=False)

    def records(self) -> list[dict]:
        """One plain dict per row (NaN stays NaN, as `DataFrame.to_dict("records")` gives)."""
        names = list(self._arrays)
        lists = [self._arrays[n].tolist() for n in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]
