"""Pipeline commands: `run` (the training pipeline with kfp.local) and `compile` (every
pipeline to KFP YAML for a cluster)."""

from __future__ import annotations

import logging
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
from mlplatform.workspace import PROJECT_ROOT, REPO_ROOT, Workspace

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
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Stream every task's output to the terminal, as kfp.local prints it (default: "
            "one line per task with its result; the full output goes to a log file).",
        ),
    ] = False,
) -> None:
    """Run the training pipeline locally with kfp.local: one line per task with its key result,
    the full task logs in a file under the home, then where everything went."""
    from mlplatform.cli.run_view import log_tail, run_shown
    from mlplatform.jobs.data import source_path
    from mlplatform.jobs.progress import training_results
    from mlplatform.jobs.run_report import where_everything_went, why_it_stopped

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
    root = Workspace.locate(home_dir, s.name).pipeline_runs
    typer.echo(f"running pipeline mlplatform-training for {s.name} on {src}")
    try:
        from pipelines.local import run_training, task_names
    except ImportError as exc:
        _fail(f"the pipelines package is not importable ({exc}); run from the repository root")
    started = time.time()
    log_path = root / "logs" / f"training-{time.strftime('%Y%m%d-%H%M%S')}.log"
    verbose = verbose or logging.getLogger().level <= logging.DEBUG

    def pipeline() -> None:
        nonlocal root
        if runner == "container":
            from pipelines.local import run_training_in_containers

            root = home_dir  # DockerRunner mounts the pipeline root: the home itself
            run_training_in_containers(s.name, str(src), home_dir)
        else:
            run_training(s.name, str(src), home_dir, root)

    try:
        run_shown(
            pipeline, task_names("training"), training_results(s, home_dir, started), log_path,
            verbose,
        )
    except Exception as exc:  # noqa: BLE001 - kfp raises RuntimeError; the engine its own
        why = why_it_stopped(s, home_dir, started)
        tail = ""
        if not verbose and not why.quarantined:
            tail = f"\nthe log's end ({log_path}):\n{log_tail(log_path)}"
        _fail(
            f"pipeline failed: {exc}{why.hint}{tail}", EXIT_REJECTED if why.quarantined else 1
        )
    typer.echo("\ndone. where everything went:")
    for line in where_everything_went(s, home_dir, root):
        typer.echo(line)


@commands.command("compile")
def compile_pipelines(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = REPO_ROOT
    / "pipelines"
    / "compiled",
) -> None:
    """Compile every pipeline to KFP YAML (submit it to Kubeflow Pipelines)."""
    from pipelines import batch_scoring, monitoring, training

    for module in (training, batch_scoring, monitoring):
        typer.echo(f"wrote {module.compile_to(out)}")


