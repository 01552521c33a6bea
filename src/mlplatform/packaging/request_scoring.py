"""What the model server runs for one request, without the HTTP around it.

The server scores a request in two steps: the contract turns the JSON body into typed columns
(and refuses what does not fit), then the packaged model scores the columns. The pipeline times
the same two steps when it weighs a candidate's serving latency and when the battery checks a
registered version's p99, so the budget in the use case is spent on the work a served request
really does, not on MLflow's input enforcement that the server skips (ADR 0022).

No KServe here: this module runs in the pipeline environment as well as the serving one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from mlplatform.packaging.contract import Contract, json_records
from mlplatform.training.columns import Columns

Scores = tuple[np.ndarray, np.ndarray]  # (probability, 0/1 prediction)


def direct_predict(pyfunc) -> Callable[[Columns], Scores]:
    """(probability, prediction) arrays for the contract's typed columns (`Columns`).

    The platform's own packaged model is called below MLflow's input enforcement, on the
    columns themselves. The contract has already built what the signature asks for (names,
    float64 doubles, object strings, nulls), so MLflow's second check of the same rows only
    cost time: ~40% of a single-row prediction, and a DataFrame around the arrays a third of
    the rest. Any other pyfunc gets the frame and MLflow's full path (ADR 0019).
    """
    from mlplatform.packaging.pyfunc import PlatformModel as Packaged

    try:
        inner = pyfunc.unwrap_python_model()
    except Exception:  # not a python_model flavour: MLflow's path is the only one
        inner = None
    if isinstance(inner, Packaged):
        return inner.scores

    def through_mlflow(rows: Columns) -> Scores:
        out = pyfunc.predict(rows.to_frame())
        return out["probability"].to_numpy(), out["prediction"].to_numpy()

    return through_mlflow


def request_scorer(pyfunc) -> Callable[[dict], Scores]:
    """A function from a KServe v1 body to (probability, prediction): the server's per-request
    work (contract, then the model) in-process."""
    contract = Contract.of_model(pyfunc)
    predict = direct_predict(pyfunc)

    def score(body: dict) -> Scores:
        return predict(contract.columns_v1(body))

    return score


def single_row_bodies(rows: pd.DataFrame, n: int) -> list[dict]:
    """`n` one-instance v1 bodies cycling through `rows`, nulls as JSON sends them (None)."""
    records = json_records(rows)
    return [{"instances": [records[i % len(records)]]} for i in range(n)]
