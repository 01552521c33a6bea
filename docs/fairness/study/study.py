"""Scratch study: in-processing error-rate constraints vs reweighing on credit, over split seeds.

Library pieces: split, Preprocessor, FAMILIES, reweighing_weights, add_slice_columns (via the
group table) and fairness_report (the gate, unchanged). The per-group table given to
fairness_report is built with pandas (TFMA's convention: positive when p > threshold); the
fixed split is cross-checked against evaluate_predictions (TFMA) in check_tfma.py.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from equalized_odds import FOLDS, constrained_weights, fold_ids  # noqa: E402

from mlplatform.evaluation.fairness import fairness_report  # noqa: E402
from mlplatform.evaluation.slicing import add_slice_columns  # noqa: E402
from mlplatform.spec import UseCase, load_usecase  # noqa: E402
from mlplatform.training.dataset import split  # noqa: E402
from mlplatform.training.families import FAMILIES  # noqa: E402
from mlplatform.training.mitigation import reweighing_weights  # noqa: E402
from mlplatform.training.preprocessing import Preprocessor  # noqa: E402

# built by build_training_set.py; MLPLATFORM_STUDY_HOME names another home
TS = str(
    Path(os.environ.get("MLPLATFORM_STUDY_HOME", "/tmp/credit-study")) / "training_set.parquet"
)


def group_table(test: pd.DataFrame, proba: np.ndarray, spec: UseCase) -> pd.DataFrame:
    sliced = add_slice_columns(test, spec, None)
    y = test[spec.label].astype("int64").to_numpy()
    pred = proba > spec.selection.threshold
    rows = []
    for attr in spec.slices.protected:
        for g, idx in sliced.groupby(attr).indices.items():
            yy, pp = y[idx], pred[idx]
            neg, pos = (yy == 0).sum(), (yy == 1).sum()
            rows.append(
                {
                    "slice_column": attr,
                    "slice_value": str(g),
                    "example_count": len(idx),
                    "fpr": (pp & (yy == 0)).sum() / neg if neg else np.nan,
                    "fnr": (~pp & (yy == 1)).sum() / pos if pos else np.nan,
                    "accuracy": (pp == (yy == 1)).mean(),
                    "mean_label": yy.mean(),
                }
            )
    return pd.DataFrame(rows)


def with_seed(spec: UseCase, seed: int) -> UseCase:
    data = spec.model_dump(mode="json")
    data["split"]["seed"] = seed
    return UseCase.model_validate(data)


def oof_factory(family, pre, seed, train, y, valid, y_valid, params):
    folds = fold_ids(y, FOLDS, seed)

    def oof(weights):
        out = np.empty(len(y))
        for k in range(FOLDS):
            fit_rows = folds != k
            fam = FAMILIES[family](pre, seed=seed, params=params)
            fam.fit(train[fit_rows], y[fit_rows], valid, y_valid, weights[fit_rows])
            out[~fit_rows] = fam.predict_proba(train[~fit_rows])
        return out

    return oof


def run(spec0, df, family, variant, seed, params=None, max_rounds=5, step=4.0):
    spec = with_seed(spec0, seed)
    s = split(df, spec)
    y = s.train[spec.label].astype("int64").to_numpy()
    yv = s.valid[spec.label].astype("int64").to_numpy()
    pre = Preprocessor.fit(s.train, spec)
    t0 = time.perf_counter()
    info = {}
    if variant == "none":
        w = None
    elif variant == "reweigh":
        w = reweighing_weights(s.train, y, spec)
    else:
        base = reweighing_weights(s.train, y, spec) if "+rake" in variant else None
        oof = oof_factory(family, pre, seed, s.train, y, s.valid, yv, params)
        cw = constrained_weights(
            s.train,
            y,
            spec,
            oof,
            base=base,
            max_rounds=max_rounds,
            step=step,
            shrink=variant.endswith("shrunk"),
        )
        w = cw.weights
        info = {
            "rounds": len(cw.rounds),
            "kept": cw.kept_round,
            "train_gaps": {k: round(v, 3) for k, v in cw.gaps.items()},
            "round_max": [round(max(r.values()), 3) for r in cw.rounds],
            "multipliers": cw.multipliers,
        }
    fam = FAMILIES[family](pre, seed=seed, params=params)
    fam.fit(s.train, y, s.valid, yv, w)
    secs = time.perf_counter() - t0
    proba = fam.predict_proba(s.test)
    yt = s.test[spec.label].astype("int64").to_numpy()
    rep = fairness_report(group_table(s.test, proba, spec), spec)
    gaps = {f"{c.attribute}.{c.metric}": round(c.disparity or 0.0, 3) for c in rep.checks}
    g = rep.groups
    age = g[(g["attribute"] == "age_band") & (g["metric"] == "fnr")]
    info["test_age_fnr"] = {r.group: round(r.rate, 3) for r in age.itertuples()}
    info["test_fnr"] = round(float(np.mean(proba[yt == 1] <= spec.selection.threshold)), 3)
    info["test_fpr"] = round(float(np.mean(proba[yt == 0] > spec.selection.threshold)), 3)
    return {
        "family": family,
        "variant": variant,
        "seed": seed,
        "auc": round(float(roc_auc_score(yt, proba)), 4),
        "passed": rep.passed,
        "gaps": gaps,
        "failures": rep.failures,
        "seconds": round(secs, 1),
        "w_range": None if w is None else [round(float(w.min()), 3), round(float(w.max()), 3)],
        **info,
    }


def main() -> None:
    spec = load_usecase("credit")
    df = pd.read_parquet(TS)
    family = sys.argv[1]
    variants = sys.argv[2].split(",")
    seeds = [int(x) for x in sys.argv[3].split(",")]
    extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    for seed in seeds:
        for v in variants:
            r = run(spec, df, family, v, seed, **extra)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
