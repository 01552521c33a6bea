"""What a trigger starts: the training jobs on the newest accepted data, in process, ending with
registration, the battery and the champion-challenger decision (mlplatform.governance.decision:
both versions scored on the candidate's newest held-out rows), as the training pipeline does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from mlplatform.workspace import Workspace

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
    from mlplatform.jobs.data import features_job
    from mlplatform.jobs.models import evaluate_job, register_job, train_candidate

    t0 = time.perf_counter()
    folder = Workspace.locate(home, usecase).monitoring / "training_sets"
    folder.mkdir(parents=True, exist_ok=True)
    ts = folder / f"training_set-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**6}.parquet"
    build = features_job(usecase, home, ts)
    run = train_candidate(usecase, family, ts, home)
    evaluate_job(usecase, run.run_id, home)
    out = register_job(usecase, run.run_id, run.model_uri, ts, home)
    return RetrainOutcome(
        version=out.version,
        run_id=run.run_id,
        model_uri=run.model_uri,
        challenger=out.alias is not None,
        gate=out.gate,
        training_set=ts,
        training_rows=build.training_rows,
        seconds=round(time.perf_counter() - t0, 1),
    )
