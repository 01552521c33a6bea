"""Serving processes on loopback: model servers, fault proxies and the router, started with
the serving environment's interpreter, waited for, and stopped. Used by `mlplatform deploy`,
`mlplatform canary demo`, the benchmarks and the integration tests alike."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlplatform.workspace import REPO_ROOT, Workspace

SERVING_PY = REPO_ROOT / ".venv-serving" / "bin" / "python"


class StackError(RuntimeError):
    """A serving process did not come up; the message carries the end of its log."""


def serving_python() -> Path:
    """The serving environment's interpreter (this one if we already run inside it)."""
    if SERVING_PY.exists():
        return SERVING_PY
    if Path(sys.prefix).name == ".venv-serving":
        return Path(sys.executable)
    raise StackError(f"{SERVING_PY} is missing: `make setup` builds the serving environment")


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Process:
    """One serving process: its role, base URL, log file and the Popen handle."""

    role: str
    url: str
    log: Path
    proc: subprocess.Popen = field(repr=False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def spawn(role: str, module: str, args: list[str], port: int, log_dir: Path) -> Process:
    """Start `python -m module args --port port` in the serving env, logging to a file."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{role}-{port}.log"
    with open(log, "w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [str(serving_python()), "-m", module, *args, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Process(role, f"http://127.0.0.1:{port}", log, proc)


def wait_ready(p: Process, path: str, timeout: float = 120) -> None:
    """Poll `p.url + path` until it answers 2xx; StackError (naming the process and its log
    file, with the log's end) if the process exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not p.alive():
            raise StackError(
                f"{p.role} exited with {p.proc.returncode} (log: {p.log}):\n{p.log_tail()}"
            )
        with contextlib.suppress(OSError):
            urllib.request.urlopen(p.url + path, timeout=2).read()
            return
        time.sleep(0.3)
    raise StackError(
        f"{p.role} at {p.url} not ready within {timeout:.0f} s (log: {p.log}):\n{p.log_tail()}"
    )


def stop(*procs: Process) -> None:
    """Terminate, then wait (kill what does not exit within 30 s)."""
    for p in procs:
        if p.alive():
            p.proc.terminate()
    for p in procs:
        try:
            p.proc.wait(30)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait(10)


def model_server(
    role: str,
    model_name: str,
    model_uri: str,
    tracking_uri: str,
    log_dir: Path,
    port: int | None = None,
    extra_args: list[str] | None = None,
) -> Process:
    """The KServe-protocol model server for a registry URI (not yet waited for); `extra_args`
    go to mlplatform.serving.server as they are (e.g. ["--request-log", DIR])."""
    args = ["--model-name", model_name, "--model-uri", model_uri, "--tracking-uri", tracking_uri]
    args += extra_args or []
    return spawn(role, "mlplatform.serving.server", args, port or free_port(), log_dir)


def fault_proxy(upstream: str, faults: list[str], log_dir: Path, seed: int = 7) -> Process:
    """A fault-injecting proxy in front of `upstream` (see mlplatform.release.faults)."""
    args = ["--upstream", upstream, "--seed", str(seed), *faults]
    return spawn("faults", "mlplatform.release.faults", args, free_port(), log_dir)


def model_pair(
    model_name: str,
    uris: dict[str, str],
    tracking_uri: str,
    log_dir: Path,
    started: list[Process],
    extra_args: list[str] | None = None,
    timeout: float = 120,
    log=lambda _msg: None,
    wait: bool = True,
) -> dict[str, Process]:
    """Champion and challenger model servers (`uris` maps role to registry URI), started
    together and (unless `wait` is False: the caller starts more before waiting) waited for.
    Each is appended to `started` as soon as it exists, so the caller's cleanup stops it even
    when the other one fails to come up."""
    servers = {}
    for role, uri in uris.items():
        servers[role] = model_server(
            role, model_name, uri, tracking_uri, log_dir, extra_args=extra_args
        )
        started.append(servers[role])
    for p in servers.values():
        log(f"starting the {p.role} model server at {p.url} ...")
        if wait:
            wait_ready(p, READY["model"], timeout)
    return servers


def router(
    champion: str, challenger: str, log_dir: Path, percent: int = 0, port: int | None = None
) -> Process:
    """The weighted router between two upstream base URLs."""
    args = ["--champion", champion, "--challenger", challenger]
    args += ["--challenger-percent", str(percent)]
    return spawn("router", "mlplatform.release.router", args, port or free_port(), log_dir)


READY = {"model": "/v2/health/ready", "faults": "/metrics", "router": "/router/state"}


@dataclass
class Deployment:
    """What `mlplatform deploy` started, saved so `mlplatform canary` can find it."""

    usecase: str
    router: str
    champion: str
    challenger: str
    champion_version: str
    challenger_version: str
    tracking_uri: str
    pids: dict[str, int] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Deployment:
        if not path.exists():
            raise StackError(
                f"no deployment at {path}: start one with `mlplatform deploy` (or `make serve`)"
            )
        return cls(**json.loads(path.read_text()))


def deployment_file(home: Path, usecase: str) -> Path:
    return Workspace.locate(home, usecase).serving / "deployment.json"
