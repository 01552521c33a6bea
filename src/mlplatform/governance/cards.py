"""Model cards: one page per version, markdown and HTML, from measured results only.

Numbers come from the registry (tags, battery, gate), the version's MLflow run (metrics,
params) and the evaluation it logged (`evaluation/slices.csv`, `evaluation/fairness.md`);
approvals and stages from the audit trail and the stage history. The only prose is the
use case's own: `intended_use`, `limitations` and the `model_card` section of the spec.
Anything not measured says so instead of being filled in.
"""

from __future__ import annotations

import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from mlplatform.governance.lineage import Lineage, lineage
from mlplatform.spec import UseCase

ARTIFACT_DIR = "model_card"
NOT_MEASURED = "_Not measured: the run logged no {what}._"
SERVING = {
    "serving_single_p50_ms": ("single-row p50", "ms"),
    "serving_single_p99_ms": ("single-row p99", "ms"),
    "serving_batch_rows_per_s": ("batch throughput", "rows/s"),
    "serving_artifact_mb": ("artifact size", "MB"),
}


def _table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _evaluation_artifacts(run_id: str, dst: Path) -> dict[str, Path]:
    """The evaluation files the run logged (evaluate_job), downloaded; {} when none."""
    import mlflow
    from mlflow import MlflowClient

    logged = {Path(f.path).name for f in MlflowClient().list_artifacts(run_id, "evaluation")}
    out = {}
    for name in ("slices.csv", "fairness.md"):
        if name in logged:
            out[name] = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=f"evaluation/{name}", dst_path=str(dst)
                )
            )
    return out


def _slices_section(spec: UseCase, files: dict[str, Path]) -> str:
    if "slices.csv" not in files:
        return NOT_MEASURED.format(what="TFMA slice metrics (evaluation/slices.csv)")
    table = pd.read_csv(files["slices.csv"], dtype={"slice_value": str})
    floor = spec.fairness.min_group_size
    shown = table[table["example_count"] >= floor]
    cols = [c for c in ("auc", "accuracy", "precision", "recall", "fpr", "fnr") if c in table]
    rows = [
        [r["slice_column"], r["slice_value"], int(r["example_count"]), *[r[c] for c in cols]]
        for _, r in shown.iterrows()
    ]
    note = (
        f"TFMA on the held-out set at threshold {spec.selection.threshold}. "
        f"{len(table) - len(shown)} slices with fewer than {floor} rows are left out here "
        "(they are in the run's `evaluation/slices.csv`)."
    )
    return note + "\n\n" + _table(["slice", "value", "rows", *cols], rows)


def _fairness_section(spec: UseCase, files: dict[str, Path]) -> str:
    if not spec.slices.protected:
        return (
            f"The use case declares no protected attributes (`slices.protected` in "
            f"usecases/{spec.name}.yaml): no fairness gate applies to this model."
        )
    if "fairness.md" not in files:
        return NOT_MEASURED.format(what="fairness report (evaluation/fairness.md)")
    return files["fairness.md"].read_text().strip()


def _metrics_section(lin: Lineage) -> str:
    quality = {k: v for k, v in lin.metrics.items() if not k.startswith("serving_")}
    if not quality:
        return NOT_MEASURED.format(what="metrics")
    return _table(["metric", "value"], [[k, float(v)] for k, v in sorted(quality.items())])


def _latency_section(spec: UseCase, lin: Lineage) -> str:
    rows = [
        [label, float(lin.metrics[key]), unit]
        for key, (label, unit) in SERVING.items()
        if key in lin.metrics
    ]
    if not rows:
        return NOT_MEASURED.format(what="serving cost")
    text = (
        "Measured through the packaged MLflow artifact (the one a server loads); the "
        f"single-row p99 budget of the use case is {spec.constraints.latency_p99_ms} ms."
    )
    load = lin.battery.get("load")
    if load:
        text += f" Load battery: {load}."
    return text + "\n\n" + _table(["measure", "value", "unit"], rows)


def _data_section(lin: Lineage) -> str:
    p = lin.params
    split = (
        f"Split `{p.get('split', '?')}`: {p.get('rows_train', '?')} training, "
        f"{p.get('rows_valid', '?')} validation, {p.get('rows_test', '?')} held-out rows"
        + (
            f" (held out from {p['recent_start']})"
            if p.get("recent_start") not in (None, "None")
            else ""
        )
        + "."
    )
    rows = [
        [b["batch_id"][:12], b.get("filename", "?"), b.get("rows", "?"), b.get("status", "?")]
        for b in lin.data
    ]
    sha = lin.training_set_sha256[:12] if lin.training_set_sha256 else "not recorded"
    return "\n\n".join(
        [
            f"Training set `{Path(lin.training_set).name}` (sha256 {sha}), feature service "
            f"`{lin.feature_service}` ({', '.join(lin.feature_views)}). {split}",
            _table(["batch", "file", "rows", "status"], rows) if rows else "No batches recorded.",
        ]
    )


def _gate_text(tags: dict[str, str]) -> str:
    if "gate" in tags:  # set when the version passed and got `challenger`
        return tags["gate"]
    if "battery_passed" in tags:
        return "not passed: the version did not get `challenger` (battery or gate)"
    return "not applied yet"


def _fairness_text(spec: UseCase, tags: dict[str, str]) -> str:
    from mlplatform.evaluation.fairness import verdict_of

    if not spec.slices.protected:
        return "no protected attributes declared"
    text = verdict_of(tags).value.upper()
    if tags.get("fairness_accepted"):
        text += f"; accepted: {tags['fairness_accepted']}"
    return text


def _label_text(spec: UseCase) -> str:
    from mlplatform.data.labels import class_names

    negative, positive = class_names(spec)
    return f"`{spec.label}`: 1 = {positive!r}, 0 = {negative!r}; probability is of {positive!r}"


def _spec_text(text: str) -> str:
    return text.strip() or "_Not stated in the use-case spec._"


def build_markdown(spec: UseCase, version: str, home: Path) -> str:
    """The card of `version` as markdown."""
    lin = lineage(spec, version, home)
    card = spec.model_card
    with tempfile.TemporaryDirectory() as tmp:
        files = _evaluation_artifacts(lin.run_id, Path(tmp)) if lin.run_id else {}
        slices = _slices_section(spec, files)
        fairness = _fairness_section(spec, files)
    from mlplatform.registry.models import version_tags

    tags = version_tags(spec, version)
    battery = [[k, *v.partition(": ")[::2]] for k, v in sorted(lin.battery.items())]
    approvals = [
        [a["at"], a["role"], a["actor"], a.get("accept_fairness", "")] for a in lin.approvals
    ]
    summary = [
        ["model", f"{lin.model} v{lin.version}"],
        ["stage", lin.stage],
        ["family", lin.family],
        ["run", lin.run_id],
        ["code commit", lin.code_commit],
        ["spec hash", lin.spec_hash],
        ["label", _label_text(spec)],
        ["fairness", _fairness_text(spec, tags)],
        [
            "selection quality",
            f"{tags.get('selection_quality', 'not measured')} "
            f"({spec.selection.metric} on {spec.selection.slice})",
        ],
        ["champion-challenger gate", _gate_text(tags)],
    ]
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    sections = [
        f"# Model card: {lin.model} v{lin.version}",
        f"{spec.description}\n\nGenerated {generated} from the registry, the version's run "
        "and its logged evaluation. Prose sections come from "
        f"`usecases/{spec.name}.yaml`; every number was measured.",
        _table(["field", "value"], summary),
        "## Intended use\n\n" + _spec_text(spec.intended_use),
        "## Out of scope\n\n" + _spec_text(card.out_of_scope if card else ""),
        "## Limitations\n\n" + _spec_text(spec.limitations),
        "## Ethical considerations\n\n" + _spec_text(card.ethical_considerations if card else ""),
        "## Owners\n\n" + _spec_text(", ".join(card.owners) if card else ""),
        "## Data\n\n" + _data_section(lin),
        "## Metrics (held-out set)\n\n" + _metrics_section(lin),
        "## Metrics per slice\n\n" + slices,
        "## Fairness\n\n" + fairness,
        "## Latency and serving cost\n\n" + _latency_section(spec, lin),
        "## Test battery\n\n"
        + (_table(["check", "verdict", "detail"], battery) if battery else "_Not run._"),
        "## Approvals\n\n"
        + (
            _table(["at", "role", "approver", "fairness accepted (reason)"], approvals)
            if approvals
            else "_No approvals recorded (required for Production: tech lead and business "
            "owner, two different people)._"
        ),
        "## Stage history\n\n"
        + ("\n".join(f"- {line}" for line in lin.stage_history) or "_Never staged._"),
    ]
    return "\n\n".join(sections) + "\n"


def to_html(markdown_text: str, title: str) -> str:
    """A standalone HTML page of the card."""
    import html

    import markdown  # in both locked environments (a dependency of TensorBoard and MLflow)

    body = markdown.markdown(markdown_text, extensions=["tables"])
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:.2em .5em;text-align:left}th{background:#f4f4f4}"
    )
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>\n{body}\n</body></html>\n"
    )


def card_filename(spec: UseCase, version: str) -> str:
    return f"{spec.name}-v{version}"


def publish_card(spec: UseCase, version: str, home: Path, out_dir: Path | None = None) -> dict:
    """Build the card, log it (md + html) as an artifact of the version's run, tag the version
    with where it is, and also write it to `out_dir` when given. Returns the locations."""
    from mlflow import MlflowClient

    from mlplatform.registry.models import version_tags
    from mlplatform.tracking import registered_model_name

    md = build_markdown(spec, version, home)
    page = to_html(md, f"{registered_model_name(spec.name)} v{version}")
    stem = card_filename(spec, version)
    c = MlflowClient()
    run_id = version_tags(spec, version)["run_id"]
    with tempfile.TemporaryDirectory() as tmp:
        for suffix, text in ((".md", md), (".html", page)):
            path = Path(tmp) / f"{stem}{suffix}"
            path.write_text(text)
            c.log_artifact(run_id, str(path), ARTIFACT_DIR)
    where = {"artifact": f"runs:/{run_id}/{ARTIFACT_DIR}/{stem}.md"}
    c.set_model_version_tag(
        registered_model_name(spec.name), str(version), "model_card", where["artifact"]
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{stem}.md").write_text(md)
        (out_dir / f"{stem}.html").write_text(page)
        where.update(markdown=str(out_dir / f"{stem}.md"), html=str(out_dir / f"{stem}.html"))
    return {**where, "text": md}  # text: for the CLI to print; callers may drop it
