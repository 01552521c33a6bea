"""The test battery a model version must pass before it may be deployed.

- unit: the packaged preprocessing is deterministic, order-invariant, and survives missing
  values and unseen categories (minimum-functionality and invariance checks).
- integration: the artifact scores the most recent accepted batch completely and sanely.
- load: bounded single-row requests at a target rate through the server's request path
  (mlplatform.packaging.request_scoring); p99 within the spec's budget.
- fairness: the evaluation's fairness gate on protected attributes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlplatform.packaging.latency import time_requests
from mlplatform.spec import UseCase

Result = tuple[bool, str]
LOAD_REQUESTS = 400  # bounded: ~2 s at the default rate
LOAD_RATE_PER_S = 200.0


def _valid(p: pd.Series) -> bool:
    return bool(p.notna().all() and ((p >= 0) & (p <= 1)).all())


def unit_checks(model, rows: pd.DataFrame, numeric: list[str], categorical: list[str]) -> Result:
    sample = rows.head(64).reset_index(drop=True)
    a = model.predict(sample)["probability"]
    b = model.predict(sample)["probability"]
    if float(np.max(np.abs(a - b))) != 0.0:
        return False, "two calls on the same rows gave different probabilities"
    order = np.random.default_rng(0).permutation(len(sample))
    shuffled = model.predict(sample.iloc[order].reset_index(drop=True))["probability"]
    if not np.allclose(shuffled.to_numpy(), a.to_numpy()[order], atol=1e-7):
        return False, "a row's probability depends on the other rows in the request"
    holes = sample.copy()
    for c in numeric:
        holes[c] = np.nan
    for c in categorical:
        holes[c] = None
    if not _valid(model.predict(holes)["probability"]):
        return False, "rows with every input missing did not get a probability in [0, 1]"
    unseen = sample.copy()
    for c in categorical:
        unseen[c] = "__never_seen_category__"
    if not _valid(model.predict(unseen)["probability"]):
        return False, "unseen categories did not get a probability in [0, 1]"
    return True, f"{len(sample)} rows: deterministic, order-invariant, missing/unseen handled"


def integration_check(model, batch_rows: pd.DataFrame, labels: np.ndarray) -> Result:
    if batch_rows.empty:
        return False, "no rows of the most recent accepted batch to score"
    out = model.predict(batch_rows)
    if len(out) != len(batch_rows) or not _valid(out["probability"]):
        return False, f"scored {len(out)} of {len(batch_rows)} rows or gave invalid values"
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) == 2:
        auc = roc_auc_score(labels, out["probability"])
        if auc <= 0.5:  # a model no better than chance on data it knows is broken
            return False, f"AUC {auc:.3f} on the most recent accepted batch"
        return True, f"{len(out)} rows scored, AUC {auc:.3f}"
    return True, f"{len(out)} rows scored"


def load_check(
    model,
    rows: pd.DataFrame,
    budget_ms: float,
    requests: int = LOAD_REQUESTS,
    rate: float = LOAD_RATE_PER_S,
) -> Result:
    """Paced single-row requests through the server's request path (contract, then model;
    mlplatform.packaging.request_scoring); the p99 of their latency must stay within the budget."""
    # A failing request is a finding, not a crash.
    timed = time_requests(model, rows, requests, warmup=10, rate=rate, count_errors=True)
    p99 = timed.percentile(99)
    detail = (
        f"{requests} requests at {rate:.0f}/s target ({requests / timed.seconds:.0f}/s "
        f"achieved): p50 {timed.percentile(50):.2f} ms, p99 {p99:.2f} ms, {timed.errors} "
        f"errors; budget {budget_ms} ms"
    )
    if timed.first_error:
        detail += f"; first error: {timed.first_error}"
    return p99 <= budget_ms and timed.errors == 0, detail


def run_battery(
    spec: UseCase,
    model,
    test_rows: pd.DataFrame,
    batch_rows: pd.DataFrame,
    batch_labels: np.ndarray,
    numeric: list[str],
    categorical: list[str],
    fairness: Result,
) -> dict[str, Result]:
    return {
        "unit": unit_checks(model, test_rows, numeric, categorical),
        "integration": integration_check(model, batch_rows, batch_labels),
        "load": load_check(model, test_rows, spec.constraints.latency_p99_ms),
        "fairness": fairness,
    }
