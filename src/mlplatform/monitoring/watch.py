"""Scheduled monitoring of a served model: one call judges the traffic logged since the last.

`judge_window` is what the monitoring pipeline's first task runs, on a laptop (`make
monitor-once`) or as a Kubeflow recurring run. It reads the request-log rows and the labels
appended since the previous run (mlplatform.monitoring.tail: exactly once, by position), and:

- drift of the served features against the reference the validation gate uses (the data that
  trained the champion; the accepted history before any champion), one measure for both
  (mlplatform.data.drift);
- mean confidence against the champion's on its own training data;
- quality and the business KPI of the newly labelled predictions, per model version;
- the retraining triggers (mlplatform.monitoring.triggers) with the state they keep between
  windows.

A window with fewer than the policy's `min_rows` rows is too noisy to judge: it stays open and
the next run judges it together with what arrives meanwhile. Labels are counted whatever the
window's size. A trigger that starts a retraining stays *pending* in the state until
`close_retraining` records what came of it: when a retraining run fails, the next monitoring run
asks for it again instead of cooling down as if it had happened.

Everything persists in `<workspace>/monitoring/watch.json`, written once at the end of a
judgement (atomically), so a run that fails half-way leaves the checkpoint where it was.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd

from mlplatform.monitoring.tail import read_new_lines, read_new_records
from mlplatform.monitoring.triggers import (
    Trigger,
    TriggerLog,
    TriggerPolicy,
    TriggerState,
    evaluate_window,
    retrained,
    trigger_log_path,
)
from mlplatform.spec import UseCase
from mlplatform.workspace import Workspace

log = logging.getLogger(__name__)
REFERENCE_SAMPLE_ROWS = 3000  # rows of the reference the champion's confidence is measured on


@dataclass
class WatchState:
    """What the scheduled monitoring remembers between runs."""

    log_offsets: dict[str, int] = field(default_factory=dict)
    labels_offset: int = 0
    triggers: TriggerState = field(default_factory=TriggerState)
    pending: list[dict] = field(default_factory=list)  # triggers whose retraining is not done
    reference: dict = field(default_factory=dict)  # {"version", "confidence"} of the champion
    windows: int = 0  # windows judged

    @classmethod
    def load(cls, path: Path) -> WatchState:
        if not Path(path).exists():
            return cls()
        raw = json.loads(Path(path).read_text())
        return cls(
            log_offsets={str(k): int(v) for k, v in raw.get("log_offsets", {}).items()},
            labels_offset=int(raw.get("labels_offset", 0)),
            triggers=TriggerState(**raw.get("triggers", {})),
            pending=list(raw.get("pending", [])),
            reference=dict(raw.get("reference", {})),
            windows=int(raw.get("windows", 0)),
        )

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)


def state_path(home: Path, usecase: str) -> Path:
    return Workspace.locate(home, usecase).monitoring / "watch.json"


def labels_path(home: Path, usecase: str) -> Path:
    """The label log `mlplatform monitor labels` appends to."""
    return Workspace.locate(home, usecase).monitoring / "labels.jsonl"


@dataclass(frozen=True)
class WindowVerdict:
    """What one monitoring run found, and whether the pipeline should retrain."""

    usecase: str
    window: str  # "first..last" request times (UTC), or why nothing was judged
    rows: int
    judged: bool  # False: fewer than min_rows rows; the window stays open
    drift: dict  # feature -> {score, threshold, drifted, triggers, measure}
    confidence: float | None
    reference_confidence: float | None
    new_labels: int
    performance: dict  # "version|slice" -> metrics of the newly labelled predictions
    fired: list[dict]  # the triggers of this run (held ones included, with `held`)
    retrain: bool  # a retraining is asked for (a new trigger, or one still pending)
    reasons: list[str]
    notes: list[str]

    def summary(self) -> str:
        head = f"{self.usecase}: {self.rows} new logged rows"
        if not self.judged:
            head += " (window kept open: too few to judge)"
        lines = [head + f", {self.new_labels} new labels"]
        drifted = [f for f, d in self.drift.items() if d["drifted"]]
        if self.drift:
            lines.append(f"drifted: {', '.join(drifted) or 'none'} of {len(self.drift)} features")
        if self.confidence is not None:
            ref = self.reference_confidence
            lines.append(
                f"confidence {self.confidence:.3f}"
                + (f" (reference {ref:.3f})" if ref is not None else "")
            )
        for t in self.fired:
            lines.append(f"trigger {t['reason']}: {t['message']}" + (
                f" (held: {t['held']})" if t.get("held") else ""))
        lines.append(
            f"retrain: {'yes (' + ', '.join(self.reasons) + ')' if self.retrain else 'no'}"
        )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _window_name(frame: pd.DataFrame) -> str:
    ts = pd.to_numeric(frame["ts"], errors="coerce").dropna()
    if ts.empty:
        return "no request times"
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    first = pd.Timestamp(ts.min(), unit="s", tz="UTC").strftime(fmt)
    last = pd.Timestamp(ts.max(), unit="s", tz="UTC").strftime(fmt)
    return f"{first}..{last}"


def _reference_confidence(
    spec: UseCase, version: str | None, training, state: WatchState, notes: list[str]
):
    """The champion's mean confidence on a sample of its training set (cached per version);
    `training()` reads that set."""
    from mlplatform.registry import models as reg

    if version is None:
        notes.append("no champion in the registry: the confidence trigger is not evaluated")
        return None
    if state.reference.get("version") == version:
        return state.reference.get("confidence")
    try:
        import mlflow

        from mlplatform.monitoring.performance import confidence
        from mlplatform.packaging.pyfunc import signature_frame
        from mlplatform.training.preprocessing import model_inputs

        data = training()
        sample = data.sample(min(len(data), REFERENCE_SAMPLE_ROWS), random_state=0)
        model = mlflow.pyfunc.load_model(reg.version_uri(spec.name, version))
        probs = model.predict(signature_frame(sample, *model_inputs(spec)))["probability"]
        value = round(confidence(probs), 6)
    except Exception as exc:  # the other measures still stand; say why this one is missing
        notes.append(f"reference confidence of champion v{version} not measured: {exc}")
        return None
    state.reference = {"version": version, "confidence": value}
    return value


def champion_training_set(spec: UseCase, version: str) -> Path:
    """The training set `version`'s lineage names: every model input, the feature store's
    aggregates too (which raw batches lack)."""
    from mlplatform.registry import models as reg

    training_set = reg.version_tags(spec, version).get("training_set", "")
    if not training_set or not Path(training_set).is_file():
        raise FileNotFoundError(f"its training set {training_set or '(no tag)'} is not here")
    return Path(training_set)


def _evidently_snapshot(
    spec: UseCase, ws: Workspace, window: pd.DataFrame, name: str, version: str | None, training
) -> str:
    """Add the window's Evidently drift snapshot to the workspace `make drift-ui` opens."""
    from mlplatform.monitoring.drift import monitored_columns
    from mlplatform.monitoring.reports import WINDOW_ROWS, add_to_workspace, drift_snapshot

    if version is None:
        return "no Evidently snapshot: no champion to compare with"
    train = training()
    cols = monitored_columns(spec, [c for c in window.columns if c in train.columns])
    snapshot = drift_snapshot(train, window, cols)
    add_to_workspace(evidently_dir(ws), f"{spec.name} served traffic", snapshot, name)
    if len(window) > WINDOW_ROWS:
        return (f"Evidently snapshot drawn on a {WINDOW_ROWS:,}-row sample of the {len(window):,} "
                "rows (drift and the triggers judged every row)")
    return ""


def evidently_dir(ws: Workspace) -> Path:
    """The Evidently workspace of a use case's windows (`evidently ui --workspace` it)."""
    return ws.monitoring / "evidently"


def _new_labels(path: Path, state: WatchState) -> pd.DataFrame:
    records, end, _bad = read_new_lines(path, state.labels_offset)
    state.labels_offset = end
    if not records:
        return pd.DataFrame(columns=["request_id", "row", "label"])
    df = pd.DataFrame(records)
    df["request_id"] = df["request_id"].astype(str)
    df["row"] = pd.to_numeric(df.get("row", 0), errors="coerce").fillna(0).astype(int)
    # A label sent twice keeps its last value (a correction), as LabelLog.frame does.
    return df.drop_duplicates(["request_id", "row"], keep="last")


def judge_window(
    spec: UseCase,
    home: Path,
    request_log: Path,
    policy: TriggerPolicy | None = None,
    evidently: bool = True,
) -> WindowVerdict:
    """Judge the traffic and labels logged since the last call; persist the new state. With
    `evidently`, a judged window's Evidently snapshot joins `evidently_dir` (`make drift-ui`).
    Raises MonitoringBusy while another judgement of the use case runs."""
    from mlplatform.tracking import use_workspace

    policy = policy or TriggerPolicy()
    home = Path(home)
    ws = Workspace.for_usecase(home, spec.name)
    use_workspace(home, spec.name)
    path = state_path(home, spec.name)
    with _exclusive(path):
        return _judge(spec, home, ws, path, Path(request_log), policy, evidently)


class MonitoringBusy(RuntimeError):
    """Another monitoring run of the same use case holds the state."""


@contextmanager
def _exclusive(path: Path):
    """One judgement at a time per use case: two would read from the same checkpoint and count
    the same rows twice. The lock is the kernel's (flock): a crashed run leaves none behind."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise MonitoringBusy(
                f"another monitoring run of this use case is judging a window ({path}); wait "
                "for it to finish (on Kubeflow the recurring run allows one run at a time)"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _judge(spec, home, ws, path, request_log, policy, evidently) -> WindowVerdict:
    from mlplatform.monitoring.drift import served_drift
    from mlplatform.monitoring.performance import confidence, join_labels, performance_table
    from mlplatform.monitoring.windows import concat_frames, read_log, records_frame
    from mlplatform.registry import models as reg
    from mlplatform.validation.reference import reference_profile

    state = WatchState.load(path)
    notes: list[str] = []

    tail = read_new_records(request_log, state.log_offsets, per_file=records_frame)
    if tail.unreadable:
        notes.append(f"{tail.unreadable} request-log lines were not JSON objects (skipped)")
    if tail.rotated_away:
        notes.append(
            f"{len(tail.rotated_away)} request-log file(s) were deleted by rotation since the "
            "last run: rows appended to them after it were not seen (raise max_files or run "
            "the monitoring more often)"
        )
    window = concat_frames(tail.records)
    rows = len(window)
    judged = rows >= policy.min_rows
    if judged:
        state.log_offsets = tail.offsets
    else:
        # Kept open: the next run reads these rows again, with the ones that arrive meanwhile.
        state.log_offsets = {k: v for k, v in state.log_offsets.items() if k in tail.offsets}
        notes.append(
            f"{rows} rows < min_rows {policy.min_rows}: drift and confidence not judged yet"
        )
    name = _window_name(window) if rows else "no new requests"

    drift, conf, ref_conf = [], None, None
    if judged:
        profile = reference_profile(spec, ws)
        if profile is None:
            notes.append("no accepted batch yet: drift has no reference")
        else:
            drift = served_drift(profile, window, spec)
        probs = pd.to_numeric(window["probability"], errors="coerce").dropna()
        conf = confidence(probs) if len(probs) else None
        # The champion and its training set, resolved and read once for both references.
        champion = reg.alias_version(spec, reg.CHAMPION)
        training = cache(lambda: pd.read_parquet(champion_training_set(spec, champion)))
        ref_conf = _reference_confidence(spec, champion, training, state, notes)
        if evidently:
            try:
                note = _evidently_snapshot(spec, ws, window, name, champion, training)
            except Exception as exc:  # the report is for people; the verdict stands without it
                note = f"no Evidently snapshot: {exc}"
            if note:
                notes.append(note)

    labels = _new_labels(labels_path(home, spec.name), state)
    performance = {}
    if not labels.empty:
        logged = read_log(request_log, request_ids=labels["request_id"])
        joined = join_labels(logged, labels[["request_id", "row", "label"]])
        performance = {f"{r.version}|{r.slice}": r.metrics for r in performance_table(spec, joined)}
        if len(joined) < len(labels):
            notes.append(
                f"{len(labels) - len(joined)} of {len(labels)} new labels match no logged request"
            )

    fired: list[Trigger] = evaluate_window(
        policy, state.triggers, spec.name, name, rows if judged else 0, drift, conf, ref_conf,
        len(labels),
    )
    starting = [t for t in fired if not t.held]
    held = [t for t in fired if t.held]
    tlog = TriggerLog(trigger_log_path(home, spec.name))
    for t in held:
        tlog.append(t)  # detection stays visible; it starts nothing
    already = {p["reason"] for p in state.pending}
    if already:
        notes.append(
            f"a retraining asked for earlier ({', '.join(sorted(already))}) has not finished: "
            "asked for again"
        )
    new = [t for t in starting if t.reason not in already]  # one pending trigger per reason
    state.pending.extend(asdict(t) for t in new)
    if new:
        from mlplatform.alerts import raise_alert

        for t in new:
            raise_alert(
                spec.alerts, ws.root, "retraining_triggered", t.message, usecase=spec.name,
                reason=t.reason, window=t.window,
            )
    if judged:
        state.windows += 1
        _export(spec, ws, window, drift, conf, performance, tlog, state.pending)
    state.save(path)
    reasons = sorted({p["reason"] for p in state.pending})
    return WindowVerdict(
        usecase=spec.name,
        window=name,
        rows=rows,
        judged=judged,
        drift={d.feature: _drift_dict(d) for d in drift},
        confidence=None if conf is None else round(conf, 6),
        reference_confidence=ref_conf,
        new_labels=len(labels),
        performance=performance,
        fired=[asdict(t) for t in fired],
        retrain=bool(state.pending),
        reasons=reasons,
        notes=notes,
    )


def _export(spec: UseCase, ws: Workspace, window, drift, conf, performance, tlog, pending):
    """The judged window's gauges for the drift exporter (mlplatform.monitoring.metrics_files);
    an unjudged window leaves the last ones (their file's age says how old they are)."""
    from collections import Counter

    from mlplatform.monitoring.exporter import metrics_file, write_window_metrics

    versions = window["version"].dropna().astype(str)
    served = versions.mode().iloc[0] if len(versions) else "unknown"
    # Logged triggers (held, or closed with their outcome) and those still pending.
    counts = Counter(r.get("reason", "") for r in [*tlog.read(), *pending])
    write_window_metrics(
        metrics_file(ws.monitoring), spec.name, drift, conf, served, performance,
        spec.kpi.kind if spec.kpi else "kpi", dict(counts),
    )


def _drift_dict(d) -> dict:
    return {
        "score": round(float(d.score), 6),
        "threshold": d.threshold,
        "drifted": bool(d.drifted),
        "triggers": bool(d.triggers),
        "measure": d.measure,
    }


def close_retraining(
    spec: UseCase, home: Path, policy: TriggerPolicy | None = None, **outcome
) -> list[dict]:
    """Record what came of the pending triggers (version, gate, canary request) in the trigger
    log, clear them and start the cooldown; returns the records written."""
    policy = policy or TriggerPolicy()
    path = state_path(home, spec.name)
    with _exclusive(path):
        state = WatchState.load(path)
        tlog = TriggerLog(trigger_log_path(home, spec.name))
        written = [tlog.append(Trigger(**p), **outcome) for p in state.pending]
        state.pending = []
        retrained(policy, state.triggers)
        state.save(path)
    return written
