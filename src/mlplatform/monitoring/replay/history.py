"""The replay's inputs: its configuration, the event log it keeps, the use case's history split
into months, the served traffic's features, and one month's labelled batch through the gate.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mlplatform.monitoring.triggers import TriggerPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayConfig:
    home: Path
    usecase: str = "taxi"
    initial_months: int = 12  # the first model is trained on these
    label_delay: int = 1  # months between a prediction and its label
    drift_from: str | None = "2015-06"  # "YYYY-MM" or None for a replay without injected drift
    drift_column: str = "fare"
    drift_factor: float = 10.0
    family: str = "logistic"
    canary: bool = True
    evidently: bool = True
    max_months: int | None = None  # stop early (tests)
    # min_rows 50: the 2016 months of the 15k-row sample hold only 55-85 trips each; at that
    # size the stable months' decile scores stayed below 0.11 against thresholds of 0.3.
    policy: TriggerPolicy = field(
        default_factory=lambda: TriggerPolicy(drift_windows=1, new_labels=6000, min_rows=50)
    )


@dataclass
class Replay:
    config: ReplayConfig
    timeline: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)  # wall clock of the replay's start

    def elapsed(self) -> float:
        """Wall seconds since the replay started (events and windows are stamped with it)."""
        return round(time.perf_counter() - self.t0, 2)

    def event(self, month: str, kind: str, message: str, **detail) -> None:
        t = self.elapsed()
        self.events.append({"month": month, "kind": kind, "message": message, "t_s": t, **detail})
        log.info("[%s] %s: %s", month, kind, message)
        print(f"[{month} +{t:.0f}s] {kind}: {message}", flush=True)


def _months(df: pd.DataFrame, ts_col: str) -> pd.Series:
    return pd.to_datetime(df[ts_col], unit="s", utc=True).dt.strftime("%Y-%m")


def load_history(cfg: ReplayConfig, spec) -> pd.DataFrame:
    """The source rows sorted by event time, with `_month`, the drift applied if configured."""
    from mlplatform.workspace import PROJECT_ROOT

    df = pd.read_csv(PROJECT_ROOT / spec.source.path)
    ts = spec.event_time.column
    if ts is None:
        raise ValueError(f"{spec.name}: a replay needs event_time.column to order the months")
    df = df.sort_values(ts, kind="stable").reset_index(drop=True)
    df["_month"] = _months(df, ts)
    if cfg.drift_from:
        hit = df["_month"] >= cfg.drift_from
        df.loc[hit, cfg.drift_column] = df.loc[hit, cfg.drift_column] * cfg.drift_factor
    return df


def traffic_features(cfg: ReplayConfig, spec, history: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time model inputs of every row (Feast over the whole file, scratch workspace)."""
    from mlplatform.jobs.data import features_job, gate_for

    scratch = Path(cfg.home).resolve() / "replay-traffic"
    path = scratch / "history.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    history.drop(columns=["_month"]).to_csv(path, index=False)
    gate = gate_for(cfg.usecase, scratch)
    out = gate.process(path)
    if not out.accepted:  # e.g. the injected drift breaks a range: these are the served values
        reason = "replay: the traffic as served, anomalies expected"
        gate.release(out.record.batch_id, reason, force=True)
    ts = scratch / "traffic.parquet"
    features_job(cfg.usecase, scratch, ts)
    frame = pd.read_parquet(ts)
    order = frame[spec.entity.key].str.rsplit("-", n=1).str[1].astype(int)
    frame = frame.assign(_row=order.to_numpy()).sort_values("_row").reset_index(drop=True)
    frame["_month"] = history["_month"].to_numpy()[frame["_row"].to_numpy()]
    return frame


def ingest_month(cfg: ReplayConfig, replay: Replay, history: pd.DataFrame, month: str) -> str:
    """The labelled rows of `month` as a batch through the validation gate.

    The gate judges drift against the champion's training data with a size-aware threshold
    (ADR 0023), so a quarantine is taken at its word: the replay's operator releases only the
    injected change, confirmed with the data owner; anything else stays out of training.
    """
    from mlplatform.jobs.data import gate_for

    folder = Path(cfg.home).resolve() / "replay-batches"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{month}.csv"
    rows = history[history["_month"] == month]
    rows.drop(columns=["_month"]).to_csv(path, index=False)
    gate = gate_for(cfg.usecase, cfg.home)
    out = gate.process(path)
    if out.accepted:
        return "accepted"
    anomalies = out.report.anomalies if out.report else []
    kinds = sorted({a.kind for a in anomalies})
    if not (cfg.drift_from and month >= cfg.drift_from):
        detail = "; ".join(f"{a.feature or 'batch'} {a.kind}" for a in anomalies)
        replay.event(month, "batch_quarantined", f"gate: {detail}, kept out")
        return "quarantined"
    reason = (
        f"replay operator: {cfg.drift_column} x{cfg.drift_factor:g} from {cfg.drift_from} is "
        "a confirmed upstream unit change"
    )
    gate.release(out.record.batch_id, reason, force=True)
    replay.event(month, "batch_released", f"quarantined ({', '.join(kinds)}); {reason}")
    return "released"
