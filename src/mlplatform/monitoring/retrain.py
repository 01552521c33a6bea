"""What a trigger starts: the training jobs on the newest accepted data, the champion-challenger
gate, and a head-to-head on the most recent period.

`retrain` runs the same jobs as the training pipeline (features, train, evaluate, register with
battery and gate), in process. The registry gate compares each version's recorded quality;
`head_to_head` also scores the champion on the *challenger's* held-out recent rows, so both
models are judged on the same, newest period before the challenger is canaried.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainOutcome:
    version: str
    run_id: str
    model_uri: str
    challenger: bool  # the registry gate gave it the `challenger` alias
    gate: str
    training_set: Path
    training_rows: int
    seconds: float


def retrain(usecase: str, home: Path, family: str = "logistic") -> RetrainOutcome:
    """Features from every usable batch, one candidate of `family`, evaluation, registration."""
    from mlplatform.jobs import features_job
    from mlplatform.model_jobs import evaluate_job, register_job
    from mlplatform.training.run import train_candidate

    t0 = time.perf_counter()
    folder = Path(home).resolve() / usecase / "monitoring" / "training_sets"
    folder.mkdir(parents=True, exist_ok=True)
    ts = folder / f"training_set-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**6}.parquet"
    summary = features_job(usecase, home, ts)
    run = train_candidate(usecase, family, ts, home)
    evaluate_job(usecase, run["run_id"], home)
    out = register_job(usecase, run["run_id"], run["model_uri"], ts, home)
    return RetrainOutcome(
        version=str(out["version"]),
        run_id=run["run_id"],
        model_uri=run["model_uri"],
        challenger=out["alias"] is not None,
        gate=out["gate"],
        training_set=ts,
        training_rows=int(summary.get("training_rows", 0)),
        seconds=round(time.perf_counter() - t0, 1),
    )


@dataclass(frozen=True)
class HeadToHead:
    rows: int
    challenger_auc: float
    champion_auc: float
    margin: float

    @property
    def passed(self) -> bool:
        return self.challenger_auc >= self.champion_auc + self.margin

    def line(self) -> str:
        verdict = "passes" if self.passed else "fails"
        return (
            f"on the {self.rows} most recent held-out rows: challenger AUC "
            f"{self.challenger_auc:.4f} vs champion {self.champion_auc:.4f} "
            f"(margin {self.margin}) -> {verdict}"
        )


def head_to_head(spec, run_id: str, champion_uri: str) -> HeadToHead:
    """Both models on the challenger run's held-out recent rows (all held-out rows if none)."""
    import mlflow

    from mlplatform.model_jobs import _predictions
    from mlplatform.monitoring.performance import auc
    from mlplatform.packaging.pyfunc import signature_frame
    from mlplatform.training.preprocessing import model_inputs

    preds = _predictions(run_id)
    if "recent_period" in preds and (preds["recent_period"] == "recent").any():
        preds = preds[preds["recent_period"] == "recent"]
    numeric, categorical = model_inputs(spec)
    champion = mlflow.pyfunc.load_model(champion_uri)
    champ_p = champion.predict(signature_frame(preds, numeric, categorical))["probability"]
    y = preds[spec.label].to_numpy().astype(int)
    return HeadToHead(
        len(preds),
        auc(y, preds["probability"].to_numpy()),
        auc(y, champ_p.to_numpy()),
        spec.selection.champion_margin,
    )
