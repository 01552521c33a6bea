"""The two container images and how they are built and loaded into kind.

One setting each, read from the environment at call time:
MLPLATFORM_COMPONENT_IMAGE (also read by `components.COMPONENT_IMAGE` when pipelines compile,
so the compiled YAML names the image `make images` built) and MLPLATFORM_SERVING_IMAGE.
The defaults are the tags manifests/overlays/kind pins; a test checks that they agree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
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


# The pinned default base (python:3.11-slim floats to newer Debian releases), and the offline
# one `make base-image` builds from Debian's mirror where no registry answers (ADR 0026).
PINNED_BASE = "python:3.11.11-slim-bookworm"
OFFLINE_BASE = "mlplatform/base:bookworm"
UV_CACHE = Path(os.environ.get("UV_CACHE_DIR") or Path.home() / ".cache" / "uv")


def engine() -> str:
    """`docker` when its daemon answers, else `podman` (set up by images/engine.sh)."""
    if shutil.which("docker") and not docker_running():
        return "docker"
    if shutil.which("podman"):
        return "podman"
    raise RuntimeError(
        "no container engine: no docker daemon answers and podman is not installed; "
        "`bash images/engine.sh` installs podman (Debian) and configures it for this machine"
    )


def base_image(engine_name: str) -> str:
    """MLPLATFORM_BASE_IMAGE, else the pinned tag for docker and the offline base for podman
    (no registry is reachable on the machines podman stands in for docker)."""
    explicit = os.environ.get("MLPLATFORM_BASE_IMAGE")
    if explicit:
        return explicit
    return PINNED_BASE if engine_name == "docker" else OFFLINE_BASE


def build_command(image: Image, engine_name: str = "docker", base: str | None = None) -> list[str]:
    base = base or base_image(engine_name)
    cmd = [engine_name, "build", "-f", image.dockerfile, "-t", image.name,
           "--build-arg", f"BASE_IMAGE={base}"]
    if engine_name == "podman":
        # Host networking reaches the package registries; the host's uv cache makes the lock's
        # ~170 wheels a copy instead of a download, and the mount stays out of the layers.
        cmd += ["--network", "host", "--ignorefile", "images/.dockerignore"]
        if UV_CACHE.is_dir():
            cmd += ["-v", f"{UV_CACHE}:/uv-cache", "--build-arg", "UV_NO_CACHE=0"]
    # BuildKit reads images/<name>.Dockerfile.dockerignore beside the Dockerfile, which keeps
    # the environments and runtime state out of the repository-root context.
    return [*cmd, "."]


@dataclass(frozen=True)
class Built:
    name: str
    seconds: float
    size_mb: float


def image_size_mb(engine_name: str, name: str) -> float:
    out = run([engine_name, "image", "inspect", name, "--format", "{{.Size}}"])
    return round(int(out.strip().splitlines()[-1]) / 1e6, 1)


def image_exists(engine_name: str, name: str) -> bool:
    probe = subprocess.run([engine_name, "image", "inspect", name], capture_output=True)
    return probe.returncode == 0


def ensure_base(repo_root: Path, engine_name: str, base: str) -> None:
    """Build the offline base when it is the one asked for and missing (about a minute)."""
    if base == OFFLINE_BASE and not image_exists(engine_name, base):
        print(f"building the offline base image {base} (about a minute, once)", flush=True)
        run(["bash", str(repo_root / "images" / "base-image.sh"), base])


def build(repo_root: Path, which: tuple[str, ...] = ("component", "serving")) -> list[Built]:
    """Build the images (`which`: component, serving) with docker or podman; returns each
    image's name, build time and size."""
    eng = engine()
    if eng == "docker":
        os.environ.setdefault("DOCKER_BUILDKIT", "1")
    base = base_image(eng)
    ensure_base(repo_root, eng, base)
    out = []
    cwd = Path.cwd()
    try:
        os.chdir(repo_root)
        for image in images():
            if Path(image.dockerfile).stem.split(".")[0] not in which:
                continue
            print(f"building {image.name} with {eng} on {base} (the first build syncs the "
                  "whole lock: minutes; later ones reuse the lock layer)", flush=True)
            t0 = time.perf_counter()
            run(build_command(image, eng, base))
            built = Built(image.name, round(time.perf_counter() - t0, 1),
                          image_size_mb(eng, image.name))
            print(f"built {built.name} in {built.seconds} s, {built.size_mb} MB", flush=True)
            out.append(built)
    finally:
        os.chdir(cwd)
    return out


def load_into_kind(cluster: str) -> None:
    """Copy the built images into the kind node (no registry needed)."""
    require("kind", "docker")
    for image in images():
        run(["kind", "load", "docker-image", image.name, "--name", cluster])
