"""Pipeline commands: `run` (the training pipeline with kfp.local) and `compile` (every
pipeline to KFP YAML for a cluster)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from mlplatform.cli.common import (
    EXIT_REJECTED,
    CommandGroup,
    HomeOpt,
    UsecaseOpt,
    fail,
    home_of,
    spec_of,
)
from mlplatform.workspace import PROJECT_ROOT, REPO_ROOT

commands = CommandGroup()

_fail, _spec, _home = fail, spec_of, home_of  # the names this module's commands use


def register(app: typer.Typer) -> None:
    """Add `run` and `compile` to the main app."""
    commands.register(app)


@commands.command()
def run(
    usecase: UsecaseOpt = "taxi",
    source: Annotated[
        str, typer.Option("--source", help="Batch to ingest (default: the spec's source).")
    ] = "",
    home: HomeOpt = None,
    runner: Annotated[
        str,
        typer.Option(
            "--runner",
            help="subprocess: each task in this environment (the default); container: each "
            "task in the component image (`make images`) through docker or podman.",
        ),
    ] = "subprocess",
) -> None:
    """Run the training pipeline locally with kfp.local and print where everything went."""
    from mlplatform.jobs.data import source_path

    if runner not in ("subprocess", "container"):
        _fail(f"--runner {runner!r}: use subprocess or container")

    s = _spec(usecase)
    home_dir = _home(home).resolve()
    src = source_path(s, source or None)
    if not src.exists():
        _fail(f"{src}: the batch to ingest does not exist (check `source.path` in the spec)")
    from mlplatform.validation.schema import StaleSchema, ensure_schema, schema_path

    try:
        if ensure_schema(s, PROJECT_ROOT) == "built":
            typer.echo(f"built the missing schema {schema_path(PROJECT_ROOT, s.name)}")
    except StaleSchema as exc:
        _fail(str(exc))
    root = home_dir / s.name / "pipeline_runs"
    typer.echo(f"running pipeline mlplatform-training for {s.name} on {src}")
    try:
        from pipelines.local import run_training
    except ImportError as exc:
        _fail(f"the pipelines package is not importable ({exc}); run from the repository root")
    started = time.time()
    try:
        if runner == "container":
            from pipelines.local import run_training_in_containers

            root = home_dir  # DockerRunner mounts the pipeline root: the home itself
            run_training_in_containers(s.name, str(src), home_dir)
        else:
            run_training(s.name, str(src), home_dir, root)
    except Exception as exc:  # noqa: BLE001 - kfp raises RuntimeError; the engine its own
        from mlplatform.data.catalogue import BatchStatus, Catalogue

        ws_cat = Catalogue(home_dir / s.name / "catalogue.db")
        quarantined = ws_cat.list(s.name, BatchStatus.QUARANTINED)
        hint = ""
        if quarantined:
            q = quarantined[-1]
            hint = (
                f"\nbatch {q.short_id} is quarantined: {q.status_reason[:400]}\n"
                f"inspect: mlplatform quarantine show {q.short_id} -u {s.name}"
            )
        report = home_dir / s.name / "reports" / "selection.md"
        if not quarantined and report.exists() and report.stat().st_mtime > started:
            verdicts = [ln for ln in report.read_text().splitlines() if ln.startswith("|")]
            hint = f"\nselection report: {report}\n" + "\n".join(verdicts)
        _fail(f"pipeline failed: {exc}{hint}", EXIT_REJECTED if quarantined else 1)
    ws = home_dir / s.name
    summary = json.loads((ws / "feast" / "last_build.json").read_text())
    typer.echo("\ndone. where everything went:")
    typer.echo(f"  data catalogue   {ws / 'catalogue.db'}  (mlplatform batches list -u {s.name})")
    typer.echo(f"  stored batches   {ws / 'batches'}")
    typer.echo(f"  quarantine       {ws / 'quarantine'}  (mlplatform quarantine list)")
    typer.echo(f"  feast registry   {summary['registry']}")
    typer.echo(f"  online store     {summary['online_store']}")
    typer.echo(
        f"  training set     {summary.get('training_set')} "
        f"({summary.get('training_rows')} rows, label rate {summary.get('label_rate')})"
    )
    typer.echo(f"  pipeline runs    {root}")
    reg = ws / "reports" / "registration.json"
    if reg.exists():
        r = json.loads(reg.read_text())
        typer.echo(f"  mlflow           {ws.parent / 'mlflow' / 'mlflow.db'}  (make mlflow-ui)")
        typer.echo(f"  selection report {ws / 'reports' / 'selection.md'} (+ pareto.png)")
        typer.echo(
            f"  registered       {s.name}-classifier v{r['version']} ({r['family']}), "
            f"alias: {r['alias'] or 'none'}; gate: {r['gate']}"
        )
        for check, verdict in r["battery"].items():
            typer.echo(f"    battery {check:<12} {verdict[:150]}")


@commands.command("compile")
def compile_pipelines(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = REPO_ROOT
    / "pipelines"
    / "compiled",
) -> None:
    """Compile every pipeline to KFP YAML (submit it to Kubeflow Pipelines)."""
    from pipelines import batch_scoring, training

    for module in (training, batch_scoring):
        typer.echo(f"wrote {module.compile_to(out)}")


