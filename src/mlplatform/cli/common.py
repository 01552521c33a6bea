"""What every `mlplatform` command module shares: option types, the use-case and home lookup,
and one way to fail (a red message on stderr and a non-zero exit)."""

import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mlplatform.spec import SpecError, UseCase, load_spec, resolve_usecase
from mlplatform.workspace import PROJECT_ROOT

UsecaseOpt = Annotated[
    str, typer.Option("--usecase", "-u", help="Use-case name (usecases/<name>.yaml) or a path.")
]
HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Where runtime state lives (catalogue, batches, feature store). "
        "Default: $MLPLATFORM_HOME or ./.mlplatform",
    ),
]
MasterOpt = Annotated[
    str | None,
    typer.Option(
        "--master",
        envvar="SPARK_MASTER",
        help="Spark master URL for --engine spark, e.g. spark://127.0.0.1:7077 "
        "(`make spark-up` starts one and prints it).",
    ),
]


EXIT_REJECTED = 3  # a batch was quarantined: the pipeline must stop


class CommandGroup:
    """Top-level commands a module defines, added to the main app by its `register(app)`
    (typer binds a command to one app at decoration time)."""

    def __init__(self) -> None:
        self._commands: list[tuple[tuple, dict, object]] = []

    def command(self, *args, **kwargs):
        """Like `typer.Typer.command`: remembers the function for `register`."""

        def remember(fn):
            self._commands.append((args, kwargs, fn))
            return fn

        return remember

    def register(self, app: typer.Typer) -> None:
        for args, kwargs, fn in self._commands:
            app.command(*args, **kwargs)(fn)


def fail(msg: str, code: int = 2) -> NoReturn:
    """Print `error: msg` in red on stderr and exit with `code`."""
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def spec_of(usecase: str) -> UseCase:
    """The use case's spec, or a clear failure naming the key and line at fault."""
    try:
        return load_spec(resolve_usecase(usecase, PROJECT_ROOT))
    except SpecError as exc:
        fail(str(exc))


def home_of(home: Path | None) -> Path:
    """--home, else $MLPLATFORM_HOME, else ./.mlplatform."""
    if home is not None:
        return home
    return Path(os.environ.get("MLPLATFORM_HOME", Path.cwd() / ".mlplatform"))


def spark_master_of(engine: str, master: str | None) -> str | None:
    """The master URL of `--engine spark --master URL`, checked to answer so that a wrong URL
    fails at once and names itself; None for `--engine local`; a clear failure otherwise."""
    if engine == "local":
        return None
    if engine != "spark":
        fail(f"--engine {engine!r}: choose local or spark")
    if not master:
        fail("--engine spark needs --master URL (or SPARK_MASTER), e.g. "
             "spark://127.0.0.1:7077; `make spark-up` starts a cluster on this machine")
    from mlplatform.spark.cluster import ClusterError, check_master

    try:
        check_master(master)
    except ClusterError as exc:
        fail(str(exc))
    return master
