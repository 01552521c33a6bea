"""The `mlplatform` command line: `mlplatform --help`, or `python -m mlplatform.cli`."""

from mlplatform.cli.main import app

__all__ = ["app"]
