"""Jobs of the modelling stage: train a candidate, evaluate it, select, register with battery and
gate, reproduce a version from its lineage.

Components and the CLI call these; each takes plain values (paths, run ids) and returns plain
values or a small frozen dataclass.
"""

from __future__ import annotations

import base64
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.governance.reproduction import DEFAULT_TOLERANCE, Reproduction
from mlplatform.packaging.latency import ServingCost
from mlplatform.spec import UseCase, load_usecase
from mlplatform.training.run import held_out_predictions as _predictions
from mlplatform.training.run import label_values, lineage_tags, prediction_frame

log = logging.getLogger(__name__)


def reports_dir(usecase: str, home: Path) -> Path:
    """Where the newest selection report and registration outcome are kept for people."""
    from mlplatform.workspace import Workspace

    return Workspace.for_usecase(home, load_usecase(usecase).name).reports


def selection_quality(result, spec: UseCase) -> float:
    metric = spec.selection.metric
    if spec.selection.slice == "recent":
        row = result.slice("recent_period", "recent")
    else:
        row = result.overall
    value = row[metric]
    if value is None or value != value:
        raise ValueError(f"{metric} is undefined on the {spec.selection.slice} slice")
    return float(value)


@dataclass(frozen=True)
class TrainedCandidate:
    """One trained candidate: its MLflow run, the packaged pyfunc's URI, and the metrics logged
    to that run, all measured through the packaged pyfunc."""

    run_id: str
    model_uri: str  # the packaged pyfunc (runs:/<run_id>/...)
    auc_overall: float  # on the held-out test rows
    auc_recent: float | None  # on the test rows' recent slice; None when it lacks a class
    serving: ServingCost  # single-row p50/p99, batch rows/s, artifact size

    def metrics(self) -> dict[str, float]:
        """The metrics as logged to the run: auc_overall, auc_recent (only when defined) and
        serving_*."""
        out = {"auc_overall": self.auc_overall}
        if self.auc_recent is not None:
            out["auc_recent"] = self.auc_recent
        return {**out, **self.serving.as_metrics()}

    def to_dict(self) -> dict:
        """run_id, model_uri and the run's metrics under their MLflow names (flat)."""
        return {"run_id": self.run_id, "model_uri": self.model_uri, **self.metrics()}


def train_candidate(
    usecase: str, family: str, training_set: Path, home: Path, params: dict | None = None
) -> TrainedCandidate:
    """Fit one candidate family on the training set, package it as an MLflow pyfunc and log the
    run (params, lineage tags, held-out predictions, AUC, serving cost); returns the run id,
    the model URI and those metrics as a TrainedCandidate. The numbers are measured through the
    packaged pyfunc: those of the artifact that would be deployed, not of the in-memory object
    that built it.

    `params` override the family's defaults (e.g. `{"epochs": 3}` for a quick Keras run);
    they are logged with the run like the defaults."""
    import mlflow
    from sklearn.metrics import roc_auc_score

    from mlplatform.data.labels import class_names
    from mlplatform.evaluation.slicing import check_slices
    from mlplatform.packaging.latency import measure
    from mlplatform.packaging.pyfunc import log_pyfunc, signature_frame
    from mlplatform.tracking import use_workspace
    from mlplatform.training.dataset import split
    from mlplatform.training.families import FAMILIES
    from mlplatform.training.mitigation import reweighing_weights
    from mlplatform.training.preprocessing import Preprocessor

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(FAMILIES)}")
    unknown = sorted(set(params or {}) - set(FAMILIES[family].default_params()))
    if unknown:  # a misspelt parameter would otherwise be ignored without a word
        raise ValueError(
            f"unknown {family} parameter(s) {unknown}; "
            f"known: {sorted(FAMILIES[family].default_params())}"
        )
    spec = load_usecase(usecase)
    df = pd.read_parquet(training_set)
    splits = split(df, spec)
    check_slices(df, spec, splits.recent_start)  # a slice matching nothing is a spec error
    pre = Preprocessor.fit(splits.train, spec)
    fam = FAMILIES[family](pre, seed=spec.split.seed, params=params)
    exp = use_workspace(home, spec.name)
    tags = {**lineage_tags(spec, df, training_set), "family": family}
    with mlflow.start_run(experiment_id=exp, run_name=f"train-{family}", tags=tags) as run:
        mlflow.log_params({f"param_{k}": v for k, v in fam.params.items()})
        mlflow.log_params(
            {
                "seed": fam.seed,
                "split": spec.split.strategy,
                **{f"rows_{k}": v for k, v in splits.sizes().items()},
                "recent_start": str(splits.recent_start),
            }
        )
        y_train = label_values(splits.train, spec)
        weights = None
        if spec.fairness.mitigation == "reweigh" and spec.slices.protected:
            weights = reweighing_weights(splits.train, y_train, spec)
        mlflow.log_params(
            {
                "fairness_mitigation": spec.fairness.mitigation,
                **(
                    {"weight_min": round(weights.min(), 4), "weight_max": round(weights.max(), 4)}
                    if weights is not None
                    else {}
                ),
            }
        )
        t0 = time.perf_counter()
        fam.fit(splits.train, y_train, splits.valid, label_values(splits.valid, spec), weights)
        mlflow.log_metric("fit_seconds", round(time.perf_counter() - t0, 3))
        with tempfile.TemporaryDirectory() as tmp:
            classes = class_names(spec) if spec.label_spec.positive is not None else None
            info = log_pyfunc(fam, spec.selection.threshold, splits.test, Path(tmp), classes)
            mlflow.set_tag("model_uri", info.model_uri)
            model = mlflow.pyfunc.load_model(info.model_uri)
            inputs = signature_frame(splits.test, pre.numeric, pre.categorical)
            out = model.predict(inputs)
            preds = prediction_frame(splits, spec, out["probability"].to_numpy())
            path = Path(tmp) / "test_predictions.parquet"
            preds.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), "evaluation")
            local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=tmp))
            cost = measure(model, inputs, local)
        y = label_values(splits.test, spec)
        auc_recent = None
        recent = preds[preds["recent_period"] == "recent"] if "recent_period" in preds else None
        if recent is not None and recent[spec.label].nunique() == 2:
            auc_recent = float(roc_auc_score(recent[spec.label], recent["probability"]))
        trained = TrainedCandidate(
            run_id=run.info.run_id,
            model_uri=info.model_uri,
            auc_overall=float(roc_auc_score(y, preds["probability"])),
            auc_recent=auc_recent,
            serving=cost,
        )
        mlflow.log_metrics(trained.metrics())
        log.info("%s: %s", family, trained.metrics())
        return trained


@dataclass(frozen=True)
class Evaluation:
    """One candidate's evaluation as logged to its run: TFMA's overall metrics, the selection
    quality and the fairness verdict."""

    run_id: str
    quality: float  # the spec's selection metric on its slice (also in metrics)
    metrics: dict[str, float]  # tfma_<metric> overall, and selection_quality
    fairness_verdict: str  # "pass", "inconclusive" or "fail" (ADR 0025)
    fairness_passed: bool
    fairness_failures: list[str]  # each gap not shown to be within the limit, in words


def evaluate_job(usecase: str, run_id: str, home: Path) -> Evaluation:
    """TFMA slice metrics and the fairness gate for one candidate, logged to its run."""
    import mlflow

    from mlplatform.evaluation.fairness import fairness_report
    from mlplatform.evaluation.tfma_eval import evaluate_predictions
    from mlplatform.tracking import use_workspace

    spec = load_usecase(usecase)
    use_workspace(home, spec.name)
    preds = _predictions(run_id)
    recent_start = None
    if "recent_period" in preds:
        recent_start = preds.loc[preds["recent_period"] == "recent", "event_timestamp"].min()
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        result = evaluate_predictions(
            preds,
            spec,
            label=spec.label,
            prediction_col="probability",
            threshold=spec.selection.threshold,
            recent_start=recent_start,
            output_path=f"{tmp}/tfma",
        )
        fair = fairness_report(result, spec)
        quality = selection_quality(result, spec)
        out = Path(tmp)
        result.table.to_csv(out / "slices.csv", index=False)
        (out / "slices.md").write_text(result.to_markdown())
        (out / "fairness.md").write_text(fair.to_markdown())
        (out / "fairness.json").write_text(json.dumps(fair.to_dict(), indent=2))
        for name in ("slices.csv", "slices.md", "fairness.md", "fairness.json"):
            mlflow.log_artifact(str(out / name), "evaluation")
        mlflow.log_artifacts(f"{tmp}/tfma", "evaluation/tfma")
        overall = {
            f"tfma_{k}": float(v)
            for k, v in result.overall.items()
            if isinstance(v, (int, float)) and v == v
        }
        mlflow.log_metrics({**overall, "selection_quality": quality})
        mlflow.set_tags(
            {
                "fairness_verdict": fair.verdict.value,
                "fairness_passed": str(fair.passed).lower(),
                "fairness_summary": fair.summary()[:4900],
                "fairness_failures": "; ".join(fair.failures)[:4900],
            }
        )
    return Evaluation(
        run_id=run_id,
        quality=quality,
        metrics={**overall, "selection_quality": quality},
        fairness_verdict=fair.verdict.value,
        fairness_passed=fair.passed,
        fairness_failures=list(fair.failures),
    )


def curves_job(usecase: str, run_id: str, home: Path):
    """The candidate's ROC curve and confusion matrix on its held-out rows (the pipeline
    shows them as a ClassificationMetrics artifact)."""
    from mlplatform.data.labels import class_names
    from mlplatform.evaluation.curves import classification_curves
    from mlplatform.tracking import use_workspace

    spec = load_usecase(usecase)
    use_workspace(home, spec.name)
    preds = _predictions(run_id)
    return classification_curves(
        preds[spec.label].to_numpy(),
        preds["probability"].to_numpy(),
        spec.selection.threshold,
        class_names(spec),
    )


def _candidate(run_id: str):
    from mlflow import MlflowClient

    from mlplatform.evaluation.fairness import verdict_of
    from mlplatform.selection import Candidate

    run = MlflowClient().get_run(run_id)
    m, t = run.data.metrics, run.data.tags
    return Candidate(
        family=t["family"],
        run_id=run_id,
        model_uri=t["model_uri"],
        quality=m["selection_quality"],
        auc_overall=m.get("auc_overall", float("nan")),
        p50_ms=m["serving_single_p50_ms"],
        p99_ms=m["serving_single_p99_ms"],
        rows_per_s=m["serving_batch_rows_per_s"],
        artifact_mb=m["serving_artifact_mb"],
        fairness=verdict_of(t).value,
        fairness_failures=tuple(f for f in t.get("fairness_failures", "").split("; ") if f),
    )


@dataclass(frozen=True)
class Selection:
    """The selected candidate and where the selection report went."""

    run_id: str
    family: str
    model_uri: str
    report: str  # selection.md
    report_embedded: str  # the same with the Pareto plot inside (one file, for the KFP UI)
    reasons: dict  # family -> why it was or was not chosen


@dataclass(frozen=True)
class Registration:
    """A registered version: its battery, the champion-challenger gate and its alias."""

    version: str
    family: str
    battery_passed: bool
    alias: str | None  # "challenger" when the gate passed, else None
    gate: str  # the gate's reason, in words
    model_uri: str
    registered_uri: str  # models:/<name>/<version>
    battery: dict  # check -> "passed: ..." / "failed: ..."
    model_card: str = ""  # the card's artifact URI ("" when it could not be generated)


def select_job(usecase: str, run_ids: list[str], home: Path, report_dir: Path) -> Selection:
    """Apply the selection policy; write the report and the Pareto plot."""
    import mlflow

    from mlplatform.selection import pareto_plot, select
    from mlplatform.tracking import use_workspace

    spec = load_usecase(usecase)
    exp = use_workspace(home, spec.name)
    cands = [_candidate(r) for r in run_ids]
    sel = select(cands, spec)
    report_dir.mkdir(parents=True, exist_ok=True)
    pareto_plot(sel, spec, report_dir / "pareto.png")
    (report_dir / "selection.md").write_text(sel.markdown(spec, "pareto.png"))
    # The same report with the plot inside it, for viewers that show one file (the KFP UI).
    png = base64.b64encode((report_dir / "pareto.png").read_bytes()).decode()
    embedded = report_dir / "selection_embedded.md"
    embedded.write_text(sel.markdown(spec, f"data:image/png;base64,{png}"))
    with mlflow.start_run(
        experiment_id=exp, run_name="select", tags={"usecase": spec.name, "step": "select"}
    ):
        mlflow.log_artifacts(str(report_dir), "selection")
        if sel.winner is not None:
            mlflow.set_tags({"winner_family": sel.winner.family, "winner_run": sel.winner.run_id})
    if sel.winner is None:
        raise RuntimeError(
            "no candidate satisfies the constraints:\n"
            + "\n".join(f"  {f}: {r}" for f, r in sel.reasons.items())
        )
    return Selection(
        run_id=sel.winner.run_id,
        family=sel.winner.family,
        model_uri=sel.winner.model_uri,
        report=str(report_dir / "selection.md"),
        report_embedded=str(embedded),
        reasons=dict(sel.reasons),
    )


@dataclass(frozen=True)
class BatteryInputs:
    """What the battery runs on: the candidate's held-out rows, the newest accepted batch with
    its labels, and the fairness verdict the evaluation recorded."""

    test_rows: pd.DataFrame
    batch_rows: pd.DataFrame
    batch_labels: np.ndarray
    numeric: list[str]
    categorical: list[str]
    fairness: tuple[bool, str]


def fairness_for_battery(spec: UseCase, cand) -> tuple[bool, str]:
    """The battery's fairness check from the evaluation's three-valued verdict (ADR 0025)."""
    if not spec.slices.protected:
        return True, "no protected attributes declared"
    if cand.fairness == "pass":
        return True, f"pass: every gap shown to be <= {spec.fairness.max_disparity}"
    if cand.fairness == "inconclusive":
        return (
            True,
            "inconclusive (champion only with the business owner's --accept-fairness): "
            + "; ".join(cand.fairness_failures),
        )
    return False, "fail: " + "; ".join(cand.fairness_failures)


def battery_inputs(spec: UseCase, cand, training_set: Path, home: Path) -> BatteryInputs:
    """The rows the battery scores, in the model's signature columns."""
    from mlplatform.data.catalogue import Catalogue
    from mlplatform.packaging.pyfunc import signature_frame
    from mlplatform.training.preprocessing import model_inputs
    from mlplatform.workspace import Workspace

    numeric, categorical = model_inputs(spec)
    test_rows = signature_frame(_predictions(cand.run_id), numeric, categorical)
    full = pd.read_parquet(training_set)
    usable = Catalogue(Workspace.for_usecase(home, spec.name).catalogue).usable(spec.name)
    latest = usable[-1].batch_id if usable else None
    batch = full[full["batch_id"] == latest] if latest else full.iloc[0:0]
    return BatteryInputs(
        test_rows,
        signature_frame(batch, numeric, categorical),
        batch[spec.label].astype("int64").to_numpy(),
        numeric,
        categorical,
        fairness_for_battery(spec, cand),
    )


def _challenger_alias(spec: UseCase, version: str, home: Path) -> tuple[str | None, str]:
    """Give `version` the challenger alias if the champion-challenger gate lets it; returns
    (the alias set or None, the gate's reason)."""
    from mlplatform.governance.decision import champion_challenger, set_challenger
    from mlplatform.registry import models as reg

    decision = champion_challenger(spec, version)
    try:
        set_challenger(spec, version, decision, home=home)
    except reg.PromotionRefused as exc:
        log.warning("%s", exc)
        return None, str(exc)
    return reg.CHALLENGER, decision.reason


def register_job(
    usecase: str, run_id: str, model_uri: str, training_set: Path, home: Path
) -> Registration:
    """Register the winner, run the battery, apply the champion-challenger gate, publish the
    model card; the outcome is also written to reports/registration.json for people."""
    import mlflow

    from mlplatform.battery import run_battery
    from mlplatform.registry import models as reg
    from mlplatform.tracking import use_workspace

    spec = load_usecase(usecase)
    use_workspace(home, spec.name)
    cand = _candidate(run_id)
    version = reg.register(
        spec,
        run_id,
        model_uri,
        {
            "family": cand.family,
            "selection_quality": f"{cand.quality:.6f}",
            "fairness_verdict": cand.fairness,
            "fairness_passed": str(cand.fairness == "pass").lower(),
        },
    )
    model = mlflow.pyfunc.load_model(model_uri)
    b = battery_inputs(spec, cand, training_set, home)
    results = run_battery(
        spec, model, b.test_rows, b.batch_rows, b.batch_labels, b.numeric, b.categorical,
        b.fairness,
    )
    passed = reg.record_battery(spec, version, results)
    alias, gate = _challenger_alias(spec, version, home)
    card = ""
    try:
        from mlplatform.governance.cards import publish_card

        card = publish_card(spec, version, home)["artifact"]
    except Exception as exc:  # the registration stands without its card; say so
        log.warning("model card of v%s not generated: %s", version, exc)
    outcome = Registration(
        version=str(version),
        family=cand.family,
        battery_passed=passed,
        alias=alias,
        gate=gate,
        model_uri=model_uri,
        registered_uri=reg.version_uri(spec.name, version),
        battery={k: ("passed" if ok else "failed") + f": {d}" for k, (ok, d) in results.items()},
        model_card=card,
    )
    folder = reports_dir(usecase, home)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "registration.json").write_text(json.dumps(asdict(outcome), indent=2))
    return outcome


def reproduce_job(
    usecase: str, version: str, home: Path, tolerance: float = DEFAULT_TOLERANCE
) -> Reproduction:
    """Retrain a registered version's family on its recorded training set (same batches, same
    spec, same seed) and compare params and quality metrics with the recorded run. Inputs that
    are gone or changed raise ReproductionError before anything is trained."""
    from mlflow import MlflowClient

    from mlplatform.governance.reproduction import check_inputs, compare
    from mlplatform.registry import models as reg
    from mlplatform.tracking import registered_model_name, use_workspace

    spec = load_usecase(usecase)
    use_workspace(home, spec.name)
    tags = reg.version_tags(spec, str(version))
    notes = check_inputs(spec, tags)
    c = MlflowClient()
    original = c.get_run(tags["run_id"])
    out = train_candidate(spec.name, tags["family"], Path(tags["training_set"]), home)
    c.set_tag(out.run_id, "reproduction_of", tags["run_id"])
    c.set_tag(out.run_id, "reproduces_version", f"{registered_model_name(spec.name)}/{version}")
    again = c.get_run(out.run_id)
    checks, diffs = compare(
        original.data.metrics, again.data.metrics, original.data.params, again.data.params
    )
    return Reproduction(str(version), out.run_id, tolerance, checks, diffs, notes)
