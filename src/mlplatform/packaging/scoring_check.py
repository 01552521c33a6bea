"""Reference scores packed into the artifact, re-scored by whatever serves it.

A model server imports its own installed `mlplatform`, numpy, scikit-learn and so on; the
artifact only carries fitted parameters and the code that packaged it. If the serving side's
code or libraries score differently from the training side's, the model is silently skewed:
the failure this platform exists to stop. So packaging stores a few rows with the probabilities
the training environment gave them, and the server re-scores those rows through its own request
path at start-up and refuses to serve when they differ.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.packaging import parity
from mlplatform.packaging.parity import Parity

CHECK_FILE = "scoring_check.json"
# Rows of the test split, like the input example: enough to cover nulls and several categories.
MAX_ROWS = 32
# float64 arithmetic gives the same bits for the same code and libraries; Keras runs float32
# kernels whose summation order may vary with the CPU's instruction set.
TOLERANCE = {"keras": 1e-6}
DEFAULT_TOLERANCE = 1e-9


class ScoringMismatch(RuntimeError):
    """The serving side scores the artifact's reference rows differently from packaging."""


def reference(inputs: pd.DataFrame, probability: np.ndarray, family: str) -> dict:
    """The check to pack: up to MAX_ROWS signature-typed rows (nulls as JSON null) and the
    probabilities the packaging environment gave them."""
    n = min(len(inputs), MAX_ROWS)
    from mlplatform.packaging.contract import json_records

    return {
        "rows": json_records(inputs.head(n)),
        "probability": [float(p) for p in np.asarray(probability)[:n]],
        "tolerance": TOLERANCE.get(family, DEFAULT_TOLERANCE),
    }


def write(folder: Path, check: dict) -> None:
    (folder / CHECK_FILE).write_text(json.dumps(check, indent=1))


def read(folder: Path) -> dict | None:
    """The packed check, or None for an artifact packaged before checks existed."""
    path = folder / CHECK_FILE
    return json.loads(path.read_text()) if path.exists() else None


def compare(check: dict, probability: np.ndarray) -> Parity:
    """How far `probability` (the serving side's scores of check["rows"]) is from packaging's."""
    try:
        return parity.compare(check["probability"], probability, check["tolerance"])
    except ValueError as exc:  # a different number of scores than reference rows
        raise ScoringMismatch(f"{exc} of the reference") from exc


def packed(pyfunc) -> dict | None:
    """The check packed into a loaded platform pyfunc; None for other models and old ones."""
    try:
        return getattr(pyfunc.unwrap_python_model(), "scoring_check", None)
    except Exception:  # not a python_model flavour: nothing packed to check against
        return None


def enforce(check: dict, probability: np.ndarray) -> Parity:
    """`compare`, raising ScoringMismatch (with what to do) when the scores differ."""
    result = compare(check, probability)
    if not result.passed:
        raise ScoringMismatch(
            "this environment scores the artifact's reference rows differently from the one "
            f"that packaged it: max abs difference {result.max_abs_diff:.3g} (tolerance "
            f"{result.tolerance:g}) on reference row {result.worst_row}. Its mlplatform or "
            "libraries differ from training's: use the versions in the artifact's "
            "requirements.txt (`mlplatform package verify` rebuilds them)"
        )
    return result


def run(pyfunc, score: Callable[[dict], np.ndarray]) -> Parity | None:
    """Re-score the reference rows packed into `pyfunc` with the caller's own scoring path.

    `score` takes the rows as a KServe v1 body (what a client would send) and returns their
    probabilities: the model server passes its request path, batch scoring MLflow's `predict`.
    Raises ScoringMismatch when they differ; None when the artifact packs no check.
    """
    check = packed(pyfunc)
    if check is None:
        return None
    return enforce(check, score({"instances": check["rows"]}))
