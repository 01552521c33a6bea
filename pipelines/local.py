"""Run a pipeline on this machine with kfp.local (the embedded default behind `make run`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kfp import local


def run_training(usecase: str, source: str, home: Path, pipeline_root: Path) -> dict:
    """Run the training pipeline in subprocesses of the current (locked) interpreter."""
    from pipelines.training import training_pipeline

    # Components run as `python -m kfp.dsl.executor_main` under this interpreter; its bin dir
    # goes first on PATH so tools they start come from the same environment.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )
    task = training_pipeline(usecase=usecase, source=source, home=str(home))
    return {"outputs": getattr(task, "outputs", {})}
