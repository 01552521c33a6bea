"""The `mlplatform` command line. Heavy libraries (TensorFlow, TFDV, Feast) load inside commands,
so `--help` answers at once. Each command group lives in its own module and exposes
`register(app)`; the logic they call lives in the library."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Annotated

import typer

app = typer.Typer(
    help="Reference ML platform: validated data, feature store, models, serving, governance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# In `--help` order: data, models, pipelines, then serving, governance, monitoring, cluster.
for _module in ("data", "models", "pipelines", "serving", "governance", "monitoring", "cluster"):
    importlib.import_module(f"mlplatform.cli.{_module}").register(app)


if __name__ == "__main__":
    app()
