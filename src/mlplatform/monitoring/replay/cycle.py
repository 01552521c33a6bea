"""One monitoring cycle per window: score, log, join labels, measure, trigger, retrain, release.

`MonitoringCycle` holds what persists between windows (champion, reference profile, trigger
state, logs); the replay drives it month by month.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.data.drift import ReferenceProfile
from mlplatform.data.labels import encode_labels
from mlplatform.monitoring.drift import monitored_columns, served_drift
from mlplatform.monitoring.performance import LabelLog, confidence, join_labels, performance_table
from mlplatform.monitoring.replay.history import (
    Replay,
    ReplayConfig,
    ingest_month,
    load_history,
    traffic_features,
)
from mlplatform.monitoring.requestlog import RequestLog, RequestLogConfig
from mlplatform.monitoring.triggers import (
    TriggerLog,
    TriggerState,
    evaluate_window,
    retrained,
    trigger_log_path,
)
from mlplatform.monitoring.windows import read_log
from mlplatform.tracking import registered_model_name
from mlplatform.workspace import Workspace


@dataclass
class MonitoringCycle:
    cfg: ReplayConfig
    spec: object
    history: pd.DataFrame
    traffic: pd.DataFrame
    months: list[str]
    out_dir: Path
    replay: Replay
    champion: str = ""
    model: object = None
    profile: ReferenceProfile | None = None
    reference_confidence: float | None = None
    training_stats: object = None
    previous_stats: object = None
    state: TriggerState = field(default_factory=TriggerState)
    pending: list = field(default_factory=list)  # triggers waiting for their window's labels

    @classmethod
    def start(cls, cfg: ReplayConfig) -> MonitoringCycle:
        """Train and deploy the first champion on the initial months."""
        from mlplatform.spec import load_usecase
        from mlplatform.tracking import use_workspace

        replay = Replay(cfg)  # its clock starts here: the wall seconds include every setup step
        spec = load_usecase(cfg.usecase)
        use_workspace(cfg.home, spec.name)
        history = load_history(cfg, spec)
        months = sorted(history["_month"].unique())
        out = Workspace.locate(cfg.home, spec.name).monitoring / "replay"
        out.mkdir(parents=True, exist_ok=True)
        cycle = cls(cfg, spec, history, traffic_features(cfg, spec, history), months, out, replay)
        cycle.requests = RequestLog(RequestLogConfig(out / "requests", flush_rows=10_000))
        cycle.labels = LabelLog(out / "labels.jsonl")
        cycle.triggers = TriggerLog(trigger_log_path(cfg.home, spec.name))
        first = months[: cfg.initial_months]
        for m in first:
            ingest_month(cfg, cycle.replay, history, m)
        outcome = cycle._retrain(first[-1])
        from mlplatform.registry import models as reg

        reg.client().set_registered_model_alias(
            reg.registered_model_name(spec.name), reg.CHAMPION, outcome.version
        )
        from mlplatform.governance.stages import champion_is_reference

        champion_is_reference(spec, cfg.home, str(outcome.version))
        from mlplatform.registry.models import battery_failures

        failures = battery_failures(reg.version_tags(spec, outcome.version))
        cycle.replay.event(
            first[-1],
            "deployed",
            f"v{outcome.version} is the first champion (no champion to gate against)"
            + (f"; battery failures recorded: {'; '.join(failures)}" if failures else ""),
        )
        cycle._use_champion(outcome.version, outcome.training_set)
        return cycle

    # --- champion and reference ----------------------------------------------------------

    def _use_champion(self, version: str, training_set: Path) -> None:
        import mlflow

        from mlplatform.monitoring.drift import typed_table
        from mlplatform.packaging.pyfunc import signature_frame
        from mlplatform.training.preprocessing import model_inputs
        from mlplatform.validation.statistics import compute_statistics

        self.champion = version
        name = registered_model_name(self.spec.name)
        self.model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        train = pd.read_parquet(training_set)
        self.train_frame = train
        self.profile = ReferenceProfile.fit(train, self.spec)
        numeric, categorical = model_inputs(self.spec)
        self.inputs = (numeric, categorical)
        sample = train.sample(min(len(train), 3000), random_state=0)
        probs = self.model.predict(signature_frame(sample, numeric, categorical))["probability"]
        self.reference_confidence = confidence(probs)
        cols = monitored_columns(self.spec, list(train.columns))
        self.training_stats = compute_statistics(typed_table(train, self.spec, cols))

    def _retrain(self, month: str, reasons: list[str] | None = None):
        """Retrain; `reasons` are the triggers that started it (None: the first champion)."""
        from mlplatform.monitoring.replay.retrain import retrain
        from mlplatform.registry import models as reg

        outcome = retrain(self.spec.name, self.cfg.home, self.cfg.family)
        tags = reg.version_tags(self.spec, outcome.version)
        self.replay.event(
            month,
            "retrained",
            f"v{outcome.version} on {outcome.training_rows} rows in {outcome.seconds} s; "
            f"registry gate: {outcome.gate}",
            version=outcome.version,
            challenger=outcome.challenger,
            seconds=outcome.seconds,
            reasons=reasons,
            registry_gate=outcome.gate,
            # The battery's load check records its p50/p99 and the achieved rate: a refusal on
            # latency can be read against the machine's load at that moment.
            battery_load=tags.get("battery.load"),
        )
        return outcome

    # --- one window ----------------------------------------------------------------------

    def month(self, month: str) -> dict:
        from mlplatform.monitoring.drift import tfdv_comparison, typed_table
        from mlplatform.packaging.pyfunc import signature_frame
        from mlplatform.validation.statistics import compute_statistics

        spec, cfg = self.spec, self.cfg
        t_start = self.replay.elapsed()
        window = self.traffic[self.traffic["_month"] == month].reset_index(drop=True)
        inputs = signature_frame(window, *self.inputs)
        t0 = time.perf_counter()
        out = self.model.predict(inputs)
        score_ms = (time.perf_counter() - t0) * 1000 / max(len(window), 1)
        ts = (
            window["event_timestamp"].astype("int64") // 10**9
            if "event_timestamp" in window
            else pd.Series(time.time(), index=window.index)
        )
        ids = window[spec.entity.key].astype(str).tolist()
        records = inputs.to_dict("records")
        for i, rid in enumerate(ids):  # one request per trip, as clients send them
            self.requests.record(
                rid,
                spec.name,
                f"{registered_model_name(spec.name)}/{self.champion}",
                records[i : i + 1],
                out["probability"].iloc[i : i + 1],
                out["prediction"].iloc[i : i + 1],
                ts=float(ts.iloc[i]),
                sampled=True,
            )
        self.requests.flush()
        # Labels of `label_delay` months ago arrive now, and that month's batch is ingested.
        idx = self.months.index(month)
        new_labels, perf = 0, {}
        if idx - cfg.label_delay >= 0:
            labelled_month = self.months[idx - cfg.label_delay]
            past = self.traffic[self.traffic["_month"] == labelled_month]
            truth = encode_labels(spec.label_spec, past[spec.label])
            new_labels = self.labels.append(
                {"request_id": r, "label": int(y)}
                for r, y in zip(past[spec.entity.key].astype(str), truth, strict=True)
            )
            ingest_month(cfg, self.replay, self.history, labelled_month)
            logged = read_log(self.requests.dir)
            logged = logged[logged["request_id"].isin(set(past[spec.entity.key].astype(str)))]
            joined = join_labels(logged, self.labels.frame())
            perf = {f"{r.version}|{r.slice}": r.metrics for r in performance_table(spec, joined)}
        drift = served_drift(self.profile, window, self.spec)
        cols = monitored_columns(spec, list(window.columns))
        wstats = compute_statistics(typed_table(window, spec, cols))
        tf = tfdv_comparison(spec, cols, self.training_stats, wstats, self.previous_stats)
        self.previous_stats = wstats
        conf = confidence(out["probability"])
        fired = evaluate_window(
            cfg.policy,
            self.state,
            spec.name,
            month,
            len(window),
            drift,
            conf,
            self.reference_confidence,
            new_labels,
        )
        overall = next((v for k, v in perf.items() if k.endswith("|overall")), {})
        row = {
            "month": month,
            "t_start_s": t_start,
            "rows": len(window),
            "champion": self.champion,
            "score_ms_per_row": round(score_ms, 4),
            "drift": {d.feature: d.score for d in drift},
            "drift_thresholds": {d.feature: d.threshold for d in drift if d.triggers},
            "tfdv_skew": tf.skew,
            "tfdv_anomalies": sorted(tf.anomalies),
            "confidence": round(conf, 4),
            "reference_confidence": self.reference_confidence,
            "mean_probability": float(np.mean(out["probability"])),
            "labelled": overall.get("n", 0),
            "auc": overall.get("auc"),
            "accuracy": overall.get("accuracy"),
            "ece": overall.get("ece"),
            "kpi": overall.get("kpi"),
            "triggers": [t.reason for t in fired],
        }
        self.replay.timeline.append(row)
        for t in fired:
            held = f" (held, {t.held})" if t.held else ""
            self.replay.event(month, "trigger", t.message + held, reason=t.reason, held=t.held)
            if t.held:
                self.triggers.append(t)  # logged with its evidence; it starts nothing
        if fired and cfg.evidently:  # the report people read next to the trigger's numbers
            from mlplatform.monitoring.reports import evidently_report

            report = evidently_report(
                self.train_frame, window, cols, self.out_dir / f"evidently-{month}.html"
            )
            row["evidently"] = {k: report.get(k) for k in ("html", "drifted_columns")}
        self.pending.extend(t for t in fired if not t.held)
        # Retrain once labelled data of the triggering window are in the catalogue: before
        # that, the new model would learn nothing the champion does not know.
        first = self.months.index(self.pending[0].window) if self.pending else None
        if first is not None and idx - cfg.label_delay >= first:
            pending, self.pending = self.pending, []
            self._act(month, pending, window, inputs)
        elif any(not t.held for t in fired):
            self.replay.event(month, "retrain_scheduled", "waiting for this window's labels")
        row["t_end_s"] = self.replay.elapsed()
        return row

    def _act(self, month: str, fired, window: pd.DataFrame, inputs: pd.DataFrame) -> None:
        """Retrain, gate, canary; every step is logged with the trigger. The gate is the one
        champion-challenger decision (mlplatform.governance.decision), taken at registration
        against the champion of the moment on the candidate's newest held-out rows."""
        outcome = self._retrain(month, sorted({t.reason for t in fired}))
        retrained(self.cfg.policy, self.state)
        verdict = "passes" if outcome.challenger else "refuses"
        self.replay.event(
            month,
            "gate",
            f"champion-challenger gate {verdict}: {outcome.gate}",
            version=outcome.version,
            passed=outcome.challenger,
            registry_passed=outcome.challenger,
        )
        result = None
        if outcome.challenger:
            result = self._canary(month, outcome, window, inputs)
        for t in fired:
            self.triggers.append(
                t,
                retrained_version=outcome.version,
                registry_gate=outcome.gate,
                canary=result,
            )

    def _canary(self, month: str, outcome, window: pd.DataFrame, inputs: pd.DataFrame) -> str:
        """Canary the challenger on real servers; returns "promoted" or "rolled_back"."""
        from mlplatform.monitoring.replay.canary import canary_release
        from mlplatform.registry import models as reg
        from mlplatform.release.rollback_alert import rollback_alerter

        if not self.cfg.canary:
            self._promote(month, outcome, "canary skipped by configuration")
            return "promoted"
        traffic = inputs.assign(request_id=window[self.spec.entity.key].astype(str).to_numpy())
        tracking = f"sqlite:///{Path(self.cfg.home).resolve() / 'mlflow' / 'mlflow.db'}"
        result = canary_release(
            self.spec.name,
            reg.registered_model_name(self.spec.name),
            self.champion,
            outcome.version,
            tracking,
            traffic,
            self.out_dir / f"canary-{month}",
            on_promote=lambda version: None,  # the alias moves below, with the event logged
            on_rollback=rollback_alerter(self.spec, Path(self.cfg.home)),
            log=lambda line: print(f"[{month}] canary {line}", flush=True),
        )
        self.replay.event(
            month,
            "canary",
            f"{result.status}: {result.reason}",
            version=outcome.version,
            rounds=len(result.rounds),
            seconds=round(result.duration_s, 1),
        )
        if result.status == "promoted":
            self._promote(month, outcome, result.reason)
        return result.status

    def _promote(self, month: str, outcome, why: str) -> None:
        """Through the governance gate, as in production: two people approve, then the gate
        checks approvals, battery and champion-challenger gate. The replay's approvers are
        simulated people; a refusal is logged and the champion stays."""
        from mlplatform.governance.approvals import approve
        from mlplatform.governance.promotion import promote
        from mlplatform.registry.models import PromotionRefused

        try:
            for role in ("tech-lead", "business-owner"):
                approve(self.spec, outcome.version, role, f"replay-{role}", self.cfg.home)
            promote(self.spec, outcome.version, "canary-controller", self.cfg.home, why)
        except PromotionRefused as exc:
            self.replay.event(month, "promotion refused", str(exc), version=outcome.version)
            return
        self.replay.event(
            month,
            "promoted",
            f"v{outcome.version} is the champion ({why})",
            version=outcome.version,
        )
        self._use_champion(outcome.version, outcome.training_set)
