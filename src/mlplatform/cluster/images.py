"""The two container images and how they are built and loaded into kind.

One setting each, read from the environment at call time:
MLPLATFORM_COMPONENT_IMAGE (also read by `components.COMPONENT_IMAGE` when pipelines compile,
so the compiled YAML names the image `make images` built) and MLPLATFORM_SERVING_IMAGE.
The defaults are the tags manifests/overlays/kind pins; a test checks that they agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlplatform.cluster.tools import docker_running, require, run

DEFAULT_COMPONENT_IMAGE = "mlplatform/component:0.1.0"
DEFAULT_SERVING_IMAGE = "mlplatform/serving:0.1.0"


def component_image() -> str:
    return os.environ.get("MLPLATFORM_COMPONENT_IMAGE", DEFAULT_COMPONENT_IMAGE)


def serving_image() -> str:
    return os.environ.get("MLPLATFORM_SERVING_IMAGE", DEFAULT_SERVING_IMAGE)


@dataclass(frozen=True)
class Image:
    name: str  # repository:tag
    dockerfile: str  # relative to the repository root, which is the build context


def images() -> list[Image]:
    return [
        Image(component_image(), "images/component.Dockerfile"),
        Image(serving_image(), "images/serving.Dockerfile"),
    ]


def build_command(image: Image) -> list[str]:
    # BuildKit reads images/<name>.Dockerfile.dockerignore beside the Dockerfile, which keeps
    # the environments and runtime state out of the repository-root context.
    return ["docker", "build", "-f", image.dockerfile, "-t", image.name, "."]


def build(repo_root: Path) -> list[str]:
    """docker build both images; returns their names."""
    require("docker")
    problem = docker_running()
    if problem:
        raise RuntimeError(f"docker is installed but its daemon does not answer: {problem}")
    os.environ.setdefault("DOCKER_BUILDKIT", "1")
    cwd = Path.cwd()
    try:
        os.chdir(repo_root)
        for image in images():
            run(build_command(image))
    finally:
        os.chdir(cwd)
    return [i.name for i in images()]


def load_into_kind(cluster: str) -> None:
    """Copy the built images into the kind node (no registry needed)."""
    require("kind", "docker")
    for image in images():
        run(["kind", "load", "docker-image", image.name, "--name", cluster])
