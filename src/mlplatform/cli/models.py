"""Model commands: `package verify|edge`, `models list`, `score`: the registered artifact
resolved from an alias or version, then checked, exported, listed or used for batch scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlplatform.cli.common import (
    EXIT_REJECTED,
    CommandGroup,
    HomeOpt,
    MasterOpt,
    UsecaseOpt,
    fail,
    home_of,
    spark_master_of,
    spec_of,
)

commands = CommandGroup()
package_app = typer.Typer(help="The packaged MLflow model artifact.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry of a use case.", no_args_is_help=True)

VersionOpt = Annotated[str | None, typer.Option("--version", help="Registry version.")]
AliasOpt = Annotated[
    str | None, typer.Option("--alias", help="Registry alias (default challenger).")
]

_fail, _spec, _home = fail, spec_of, home_of  # the names this module's commands use


def register(app: typer.Typer) -> None:
    """Add `score` and the `package` and `models` groups to the main app."""
    app.add_typer(package_app, name="package")
    app.add_typer(models_app, name="models")
    commands.register(app)


def _model_uri(usecase: str, home: Path | None, version: str | None, alias: str | None) -> str:
    from mlplatform.registry.models import selector_uri
    from mlplatform.tracking import use_workspace

    s = _spec(usecase)
    use_workspace(_home(home), s.name)
    return selector_uri(s.name, version, alias)


@package_app.command("verify")
def package_verify(
    usecase: UsecaseOpt = "taxi",
    home: HomeOpt = None,
    version: VersionOpt = None,
    alias: AliasOpt = None,
    rows: Annotated[int, typer.Option("--rows", help="Sample size.")] = 200,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Allowed max abs difference (Keras: 1e-6).")
    ] = 0.0,
) -> None:
    """Rebuild a fresh env from the artifact's pinned requirements; prove identical predictions."""
    import tempfile

    import mlflow

    from mlplatform.packaging.verify import verify

    uri = _model_uri(usecase, home, version, alias)
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(uri, Path(tmp))
        typer.echo(f"verifying {uri} (model {mlflow.models.Model.load(str(local)).model_uuid})")
        sample = _sample_from_artifact(local, rows)
        result = verify(uri, sample, Path(tmp) / "verify", tolerance)
    typer.echo(
        f"{result.rows} rows: max abs diff {result.max_abs_diff:.3g} (tolerance {result.tolerance})"
    )
    if not result.passed:
        _fail(f"predictions differ in the rebuilt environment (worst: row {result.worst_row})", 1)


@package_app.command("edge")
def package_edge(
    out: Annotated[Path, typer.Argument(help="Folder for the edge model + preprocessor.")],
    usecase: UsecaseOpt = "taxi",
    home: HomeOpt = None,
    version: VersionOpt = None,
    alias: AliasOpt = None,
) -> None:
    """Export to ONNX (logistic, XGBoost) or TFLite (Keras) with a parity check and timing."""
    import tempfile

    import mlflow

    from mlplatform.packaging.edge import EdgeParityError, export_edge

    uri = _model_uri(usecase, home, version, alias)
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(uri, Path(tmp))
        pyfunc = mlflow.pyfunc.load_model(str(local))
        try:
            report = export_edge(
                local / "artifacts" / "model_dir", out, pyfunc, _sample_from_artifact(local, 200)
            )
        except EdgeParityError as exc:
            _fail(str(exc), 1)
    typer.echo(report.to_json())


def _download(uri: str, folder: Path) -> Path:
    """The registered artifact copied into `folder`; a clear error when it does not exist."""
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(folder)))
    except Exception as exc:
        _fail(f"{uri}: not found in the registry ({exc}); see `mlplatform models list`")


def _sample_from_artifact(local: Path, rows: int):
    """The artifact's own input example, repeated to `rows` rows."""
    import pandas as pd
    from mlflow.models import Model

    example = Model.load(str(local)).load_input_example(str(local))
    reps = -(-rows // len(example))
    return pd.concat([example] * reps, ignore_index=True).head(rows)


@models_app.command("list")
def models_list(usecase: UsecaseOpt = "taxi", home: HomeOpt = None) -> None:
    """Registered versions with their aliases, family, quality and battery result."""
    from mlflow import MlflowClient

    from mlplatform.tracking import registered_model_name, use_workspace

    s = _spec(usecase)
    use_workspace(_home(home), s.name)
    c = MlflowClient()
    name = registered_model_name(s.name)
    versions = c.search_model_versions(f"name='{name}'")
    if not versions:
        typer.echo(f"no versions of {name} yet; `make run USECASE={s.name}` registers one")
    for v in sorted(versions, key=lambda v: int(v.version)):
        t = v.tags
        typer.echo(
            f"v{v.version:<3} {','.join(v.aliases) or '-':<20} {t.get('family', '?'):<9} "
            f"quality {t.get('selection_quality', '?'):<9} "
            f"battery {t.get('battery_passed', '?'):<6}"
            f" {t.get('gate', '')}"
        )


@commands.command()
def score(
    source: Annotated[Path, typer.Argument(help="CSV or parquet with the model's input columns.")],
    output: Annotated[
        Path,
        typer.Argument(help="Parquet file to write (--engine spark: a Parquet dataset folder)."),
    ],
    usecase: UsecaseOpt = "taxi",
    home: HomeOpt = None,
    version: VersionOpt = None,
    alias: AliasOpt = None,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", help="Rows per chunk.")] = 50_000,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local: this process, chunk by chunk. spark: a Spark cluster (--master) with "
            "mlflow.pyfunc.spark_udf; rows the contract refuses go to OUTPUT.rejected/.",
        ),
    ] = "local",
    master: MasterOpt = None,
    allow_rejected: Annotated[
        bool,
        typer.Option(
            "--allow-rejected",
            help="--engine spark: exit 0 even when rows were refused and set aside in "
            "OUTPUT.rejected/ (default: exit 3, so a scheduler sees an incomplete scoring).",
        ),
    ] = False,
) -> None:
    """Batch-score a file with a registered model; rows keep model and data versions."""
    spark_master = spark_master_of(engine, master)
    if spark_master:
        _score_on_spark(
            source, output, usecase, home, version, alias, spark_master, allow_rejected
        )
        return
    from mlplatform.cli.run_view import rows_progress
    from mlplatform.jobs.scoring import ScoringLoadError, score_job
    from mlplatform.packaging.contract import ContractError
    from mlplatform.packaging.scoring_check import ScoringMismatch

    s = _spec(usecase)
    try:
        with rows_progress("scoring") as progress:
            res = score_job(
                s.name, source, output, _home(home), version, alias, chunk_rows, progress
            )
    except (
        FileNotFoundError, ValueError, ContractError, ScoringMismatch, ScoringLoadError
    ) as exc:
        _fail(str(exc))
    typer.echo(
        f"scored {res.rows} rows with {res.model_version} in {res.seconds:.1f}s "
        f"-> {res.output} (data version {res.data_version[:12]})"
    )


def _score_on_spark(source, output, usecase, home, version, alias, master, allow_rejected):
    """`score --engine spark`: the same job on a Spark cluster (mlplatform.spark.scoring)."""
    from mlplatform.jobs.scoring import ScoringLoadError, score_job_spark
    from mlplatform.packaging.scoring_check import ScoringMismatch
    from mlplatform.spark.cluster import ClusterError
    from mlplatform.spark.scoring import rejected_examples

    s = _spec(usecase)
    try:
        res = score_job_spark(s.name, source, output, _home(home), master, version, alias)
    except (
        FileNotFoundError, ValueError, ScoringMismatch, ScoringLoadError, ClusterError
    ) as exc:
        _fail(str(exc))
    diff = "none packed" if res.check_max_abs_diff is None else f"{res.check_max_abs_diff:.2g}"
    typer.echo(
        f"scored {res.rows} rows with {res.model_version} on {master} in {res.seconds:.1f}s "
        f"-> {res.output}/ (data version {res.data_version[:12]}; executors' scoring check: "
        f"max diff {diff})"
    )
    if res.rejected:
        # Nothing is lost (the refused rows and their reasons are kept), but the scoring is
        # incomplete: a scheduler must see it unless the user said partial output is fine.
        typer.secho(
            f"{'warning' if allow_rejected else 'error'}: {res.rejected} row(s) refused by the "
            f"model's contract were not scored; they are in {res.rejected_output}/ with the "
            "reason in column `row_error`, e.g. " + "; ".join(rejected_examples(res, 3))
            + ("" if allow_rejected else " (--allow-rejected to exit 0)"),
            fg=typer.colors.YELLOW if allow_rejected else typer.colors.RED, err=True,
        )
        if not allow_rejected:
            raise typer.Exit(EXIT_REJECTED)


