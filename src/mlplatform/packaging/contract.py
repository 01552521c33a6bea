"""The request contract of a served model, taken from its MLflow signature.

MLflow's own enforcement answers an integer for a double column with a 500 and a pandas repr;
a user who sends `600` for a fare means 600.0. This contract coerces what is safe (int to
double, a number to a category's text) and rejects the rest with a message naming the field,
so bad input is always a 4xx and never reaches the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
import pandas as pd

from mlplatform.training.columns import Columns

MAX_INSTANCES = 10_000  # one request; larger jobs belong to batch scoring


class ContractError(ValueError):
    """A request that does not fit the signature; the message names the field."""


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "double" or "string"

    @property
    def v2_datatype(self) -> str:
        """The Open Inference Protocol tensor type of this field."""
        return "FP64" if self.kind == "double" else "BYTES"


@dataclass(frozen=True)
class Contract:
    fields: tuple[Field, ...]

    @classmethod
    def from_schema(cls, schema) -> Contract:
        """From an MLflow input Schema (ColSpecs); long/int/float count as double."""
        fields = []
        for col in schema.inputs:
            t = str(col.type).lower()
            kind = "string" if "string" in t else "double"
            fields.append(Field(col.name, kind))
        return cls(tuple(fields))

    @classmethod
    def of_model(cls, pyfunc, name: str = "the model") -> Contract:
        """The contract of a loaded pyfunc, from its signature; `name` says which model in the
        error when it has none."""
        schema = pyfunc.metadata.get_input_schema()
        if schema is None:
            raise RuntimeError(f"{name} has no input signature; serving or scoring it needs one")
        return cls.from_schema(schema)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def openapi_example(self) -> dict:
        return {f.name: (1.0 if f.kind == "double" else "text") for f in self.fields}

    # -- v1: {"instances": [{field: value, ...}, ...]} -----------------------------------

    def parse_v1(self, payload: object) -> pd.DataFrame:
        """The rows of a v1 body as the frame the signature describes."""
        return self.columns_v1(payload).to_frame()

    def columns_v1(self, payload: object) -> Columns:
        """The rows of a v1 body as typed column arrays (the server's path: no DataFrame)."""
        if not isinstance(payload, dict):
            raise ContractError("the body must be a JSON object with an 'instances' list")
        instances = payload.get("instances", payload.get("inputs"))
        if instances is None:
            raise ContractError("the body has no 'instances' list")
        if not isinstance(instances, list) or not instances:
            raise ContractError("'instances' must be a non-empty list of objects")
        if len(instances) > MAX_INSTANCES:
            raise ContractError(
                f"{len(instances)} instances in one request; the limit is {MAX_INSTANCES} "
                "(use batch scoring for more)"
            )
        known = set(self.names)
        columns: dict[str, list] = {n: [] for n in self.names}
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise ContractError(f"instances[{i}] must be an object of field: value")
            unknown = sorted(set(inst) - known)
            if unknown:
                raise ContractError(
                    f"instances[{i}] has unknown field(s) {unknown}; expected {self.names}"
                )
            missing = [n for n in self.names if n not in inst]
            if missing:
                raise ContractError(
                    f"instances[{i}] lacks field(s) {missing} (send null for unknown values)"
                )
            for f in self.fields:
                columns[f.name].append(_coerce(f, inst[f.name], f"instances[{i}].{f.name}"))
        return self._columns(columns)

    # -- v2 (Open Inference Protocol): one named tensor per field ------------------------

    def parse_v2(
        self, inputs: list[tuple[str, str, list]], max_rows: int | None = MAX_INSTANCES
    ) -> pd.DataFrame:
        """`inputs` as (name, datatype, flat data) triples, as the frame of the signature."""
        return self.columns_v2(inputs, max_rows).to_frame()

    def columns_v2(
        self, inputs: list[tuple[str, str, list]], max_rows: int | None = MAX_INSTANCES
    ) -> Columns:
        """`inputs` as (name, datatype, flat data) triples, as typed column arrays. `max_rows`
        bounds one request; batch scoring, which reads its own chunks, passes None."""
        known = set(self.names)
        given = {name: (dtype, data) for name, dtype, data in inputs}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ContractError(f"unknown input tensor(s) {unknown}; expected {self.names}")
        missing = [n for n in self.names if n not in given]
        if missing:
            raise ContractError(f"missing input tensor(s) {missing}")
        lengths = {n: len(d) for n, (_, d) in given.items()}
        if len(set(lengths.values())) != 1:
            raise ContractError(f"input tensors differ in length: {lengths}")
        if max_rows is not None and next(iter(lengths.values())) > max_rows:
            raise ContractError(f"more than {max_rows} rows in one request")
        columns = {
            f.name: [_coerce(f, v, f"{f.name}[{j}]") for j, v in enumerate(given[f.name][1])]
            for f in self.fields
        }
        return self._columns(columns)

    # -- batch scoring: a chunk of a file, already a DataFrame ------------------------------

    def columns_of_frame(self, frame: pd.DataFrame) -> Columns:
        """The signature's columns of `frame` (a batch-scoring chunk) as typed arrays: exactly
        what `columns_v2` makes of each column's values as a list (the same values, the same
        error for the first bad one), taken a whole column at a time where the column's dtype
        allows it (numbers as numpy or pandas nullable numbers; text as str and nulls, or
        integer codes). Any column that does not pass the vectorised checks (an infinite or
        out-of-range number, a boolean, text in a number column, ...) goes value by value
        through `_coerce`, which raises the error naming the field and row; checking every
        value that way cost ~90% of local batch scoring's time."""
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise ContractError(f"missing input tensor(s) {missing}")
        return Columns({f.name: _column(f, frame[f.name]) for f in self.fields})

    def v2_inputs_metadata(self) -> list[dict]:
        """The input tensors as Open Inference Protocol model metadata lists them: one per
        field, in signature order, of any number of rows."""
        return [{"name": f.name, "datatype": f.v2_datatype, "shape": [-1]} for f in self.fields]

    def v2_request(self, rows: list[dict], request_id: str | None = None) -> dict:
        """The Open Inference Protocol body a client sends for `rows` (field: value dicts):
        one tensor per field in signature order, FP64 for numbers and BYTES for text."""
        if not rows:
            raise ContractError("a request needs at least one row")
        inputs = [
            {
                "name": f.name,
                "shape": [len(rows)],
                "datatype": f.v2_datatype,
                "data": [r.get(f.name) for r in rows],
            }
            for f in self.fields
        ]
        return {"inputs": inputs} if request_id is None else {"id": request_id, "inputs": inputs}

    def _columns(self, columns: dict[str, list]) -> Columns:
        # Typed arrays, built once: a frame from lists cast column by column afterwards cost
        # 3 ms per single-row request, and even a frame from these arrays costs a third of one.
        return Columns(
            {
                f.name: np.array(columns[f.name], dtype="float64" if f.kind == "double" else object)
                for f in self.fields
            }
        )


def json_records(frame: pd.DataFrame) -> list[dict]:
    """The rows of a signature-typed frame as a client sends them in JSON: plain Python values,
    None for every kind of null (NaN, None, pd.NA)."""
    return [{k: _json_value(v) for k, v in r.items()} for r in frame.to_dict("records")]


def _json_value(v: object) -> object:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


# No feature of a tabular model is measured in numbers this large; near the float maximum the
# preprocessing's (x - mean) / std overflows to infinity and the model fails (found by fuzzing).
MAX_ABS_NUMBER = 1e15


def _coerce(f: Field, value: object, where: str):
    if _is_null(value):
        return None if f.kind == "string" else math.nan
    if f.kind == "double":
        # numbers.Real also admits numpy scalars (batch files); bool is excluded on purpose.
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ContractError(
                f"{where}: expected a number, got {type(value).__name__} {value!r}"[:300]
            )
        if math.isinf(value):
            raise ContractError(f"{where}: expected a finite number, got {value}")
        if abs(value) > MAX_ABS_NUMBER:
            raise ContractError(
                f"{where}: {value:g} is out of range (|x| <= {MAX_ABS_NUMBER:g} for any number)"
            )
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ContractError(f"{where}: expected text, got a boolean")
    if isinstance(value, Real):
        # A category coded as a number ("1" for male): the same value as text.
        return str(int(value)) if float(value).is_integer() else str(value)
    raise ContractError(f"{where}: expected text, got {type(value).__name__}")


def _column(f: Field, values: pd.Series) -> np.ndarray:
    """One column of `Contract.columns_of_frame`: the vectorised path when it applies and
    every value passes it, else `_coerce` value by value (the same result, or its error)."""
    fast = _number_column(values) if f.kind == "double" else _text_column(values)
    if fast is not None:
        return fast
    coerced = [_coerce(f, v, f"{f.name}[{j}]") for j, v in enumerate(values.tolist())]
    return np.array(coerced, dtype="float64" if f.kind == "double" else object)


def _number_column(values: pd.Series) -> np.ndarray | None:
    """float64 of a numeric column if no value is infinite or beyond MAX_ABS_NUMBER (nulls
    become NaN), as `_coerce` makes them; None for any other column or value."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        if not (dtype.kind in "iu" or (dtype.kind == "f" and dtype.itemsize <= 8)):
            return None  # booleans, times, objects (text, mixed): value by value
        out = values.to_numpy(dtype="float64", copy=True)
    elif isinstance(dtype, pd.api.extensions.ExtensionDtype) and _masked_number(dtype):
        out = values.to_numpy(dtype="float64", na_value=np.nan)
    else:
        return None
    # An integer's float64 is beyond 1e15 exactly when the integer is (exact below 2**53).
    with np.errstate(invalid="ignore"):
        if (np.isinf(out) | (np.abs(out) > MAX_ABS_NUMBER)).any():
            return None
    return out


def _masked_number(dtype) -> bool:
    """pandas' nullable Int*/UInt*/Float* (not `boolean`): values are numbers or pd.NA."""
    from pandas.core.arrays.masked import BaseMaskedDtype

    return isinstance(dtype, BaseMaskedDtype) and dtype.kind in "iuf"


def _text_column(values: pd.Series) -> np.ndarray | None:
    """The object array of a text column as `_coerce` makes it: str values as they are and
    None for nulls (None, pd.NA, NaN), or integer codes as their decimal text; None for any
    other column (floats, booleans, mixed values, other nulls)."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return values.to_numpy().astype(str).astype(object)
    if not (isinstance(dtype, np.dtype) and dtype.kind == "O"):
        return None
    out = values.to_numpy(dtype=object, copy=True)
    null = pd.isna(out)
    kind = pd.api.types.infer_dtype(out[~null], skipna=False)
    if kind not in ("string", "empty"):
        return None
    if null.any():
        if not all(_is_null(v) for v in out[null]):
            return None  # NaT, Decimal("NaN"): `_coerce` refuses them
        out[null] = None
    return out


def _is_null(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, Real) and math.isnan(value))
