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
