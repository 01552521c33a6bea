"""Run a pipeline on this machine with kfp.local (the embedded default behind `make run`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kfp import local


def run_training_in_containers(usecase: str, source: str, home: Path) -> dict:
    """Run the training pipeline with kfp.local's DockerRunner: every task in the component
    image, through the engine's Docker API (docker, or podman's service).

    DockerRunner mounts the pipeline root, at the same path, into each task's container, so
    the root is the platform home itself: the catalogue, feature store and MLflow's SQLite are
    where the compiled pipeline's `home` says. The batch file is copied under the home first
    (same bytes, same batch id), as a cluster's ingest reads from the shared volume."""
    import shutil

    from mlplatform.cluster.engine_socket import docker_api, local_image_name
    from mlplatform.cluster.images import component_image

    home = Path(home).resolve()
    inbox = home / usecase / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    staged = inbox / Path(source).name
    if not staged.exists() or staged.stat().st_size != Path(source).stat().st_size:
        shutil.copy2(source, staged)
    # components.COMPONENT_IMAGE is read when the components are defined, so the name the
    # engine lists the local image under must be set before they are imported.
    want = local_image_name(component_image())
    if "components" not in sys.modules:
        os.environ["MLPLATFORM_COMPONENT_IMAGE"] = want
    import components
    from pipelines import training

    if want != components.COMPONENT_IMAGE:
        raise RuntimeError(
            f"the components were defined with image {components.COMPONENT_IMAGE!r}, the engine "
            f"lists {want!r}: set MLPLATFORM_COMPONENT_IMAGE={want} before importing them"
        )
    with docker_api():
        local.init(runner=local.DockerRunner(), pipeline_root=str(home), raise_on_error=True)
        task = training.training_pipeline(usecase=usecase, source=str(staged), home=str(home))
    return {"outputs": getattr(task, "outputs", {}), "source": str(staged)}


def task_names(pipeline: str = "training") -> dict[str, str]:
    """kfp.local's task names (`train-model-2`) mapped to the pipeline's display names
    (`train-xgboost`), which say which family a task trains."""
    # Read from the compiled pipeline (kept current by a test), not by importing it: importing
    # the components fixes their image, which the container runner must choose first.
    import yaml

    compiled = Path(__file__).parent / "compiled" / f"{pipeline}.yaml"
    spec = next(yaml.safe_load_all(compiled.read_text()))
    return {key: task["taskInfo"]["name"] for key, task in spec["root"]["dag"]["tasks"].items()}


def _in_subprocesses(pipeline_root: Path) -> None:
    """kfp.local with every task a subprocess of this (locked) interpreter."""
    # Components run as `python -m kfp.dsl.executor_main` under this interpreter; its bin dir
    # goes first on PATH so tools they start come from the same environment.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )


def run_training(usecase: str, source: str, home: Path, pipeline_root: Path) -> dict:
    """Run the training pipeline in subprocesses of the current (locked) interpreter."""
    from pipelines.training import training_pipeline

    _in_subprocesses(pipeline_root)
    task = training_pipeline(usecase=usecase, source=source, home=str(home))
    return {"outputs": getattr(task, "outputs", {})}


def run_monitoring(usecase: str, home: Path, pipeline_root: Path, **params) -> dict:
    """Run the monitoring pipeline once in subprocesses of the current (locked) interpreter;
    `params` are the pipeline's (request_log, families, min_rows, ...)."""
    from pipelines.monitoring import monitoring_pipeline

    _in_subprocesses(pipeline_root)
    task = monitoring_pipeline(usecase=usecase, home=str(home), **params)
    return {"outputs": getattr(task, "outputs", {})}


def run_batch_scoring(usecase: str, home: Path, pipeline_root: Path, **params) -> dict:
    """Run the batch scoring pipeline once in subprocesses of the current (locked) interpreter;
    `params` are the pipeline's (source, model_alias, spark_master)."""
    from pipelines.batch_scoring import batch_scoring_pipeline

    _in_subprocesses(pipeline_root)
    task = batch_scoring_pipeline(usecase=usecase, home=str(home), **params)
    return {"outputs": getattr(task, "outputs", {})}
