"""The container engine's Docker API socket, for kfp.local's DockerRunner (the docker SDK).

Docker's daemon serves it already. Podman serves the same API from `podman system service`;
it is started here when nothing answers on its socket, and stopped when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from mlplatform.cluster.images import engine

PODMAN_SOCKET = "/run/podman/podman.sock"


def _answers(url: str) -> bool:
    try:
        import docker

        client = docker.DockerClient(base_url=url, timeout=5)
        try:
            client.ping()
        finally:
            client.close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not serving yet"
        return False


@contextlib.contextmanager
def docker_api() -> Iterator[str]:
    """DOCKER_HOST set to a socket that speaks the Docker API, for the block's duration."""
    eng = engine()
    if eng == "docker":
        yield os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return
    url = f"unix://{PODMAN_SOCKET}"
    service = None
    if not _answers(url):
        print(f"starting the podman API service on {PODMAN_SOCKET}", flush=True)
        Path(PODMAN_SOCKET).parent.mkdir(parents=True, exist_ok=True)
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while not _answers(url):
            if service.poll() is not None or time.time() > deadline:
                service.kill()
                raise RuntimeError(
                    f"podman system service did not answer on {PODMAN_SOCKET}; try it by hand: "
                    f"podman system service --time=0 {url}"
                )
            time.sleep(0.3)
    before = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = url
    try:
        yield url
    finally:
        if before is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = before
        if service is not None:
            service.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.wait(timeout=10)


def local_image_name(name: str) -> str:
    """The name the engine lists a locally built image under (podman prefixes `localhost/`),
    so kfp.local finds it instead of pulling it from a registry."""
    if engine() == "podman" and "/" in name and "." not in name.split("/")[0] \
            and not name.startswith("localhost/"):
        return f"localhost/{name}"
    return name
