"""A real Spark standalone cluster on loopback: one master and N workers, bounded memory.

The PySpark wheel carries Spark's jars and `bin/spark-class`, and Java 17 is on the machine,
so the same daemons a data centre runs start here with no download. They are started as
detached processes whose ids go to `<state>/cluster.json`, so `make spark-down` (or the test
fixture) stops exactly them and nothing else. Memory is capped twice: each worker offers
`worker_memory` to executors, and the daemons' own heaps are small (SPARK_DAEMON_MEMORY).

    python -m mlplatform.spark.cluster up      # prints the master URL
    python -m mlplatform.spark.cluster status
    python -m mlplatform.spark.cluster down
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from mlplatform.workspace import REPO_ROOT

HOST = "127.0.0.1"
DEFAULT_STATE = REPO_ROOT / ".mlplatform" / "spark"
STATE_FILE = "cluster.json"
# The daemons only schedule; executors do the work in their own JVMs (worker_memory).
DAEMON_MEMORY = "384m"


class ClusterError(RuntimeError):
    """The standalone cluster could not be started, reached or stopped; says what to do."""


@dataclass(frozen=True)
class StandaloneCluster:
    """A running master + workers: where to submit, where to look, which processes to stop."""

    master_url: str
    webui_url: str
    state_dir: str
    pids: tuple[int, ...]
    workers: int
    worker_cores: int
    worker_memory: str

    @property
    def cores(self) -> int:
        return self.workers * self.worker_cores


def spark_home() -> Path:
    """The Spark distribution inside the installed PySpark wheel."""
    try:
        import pyspark
    except ImportError as exc:
        raise ClusterError(
            "pyspark is not installed in this environment; run `make setup` (it is pinned in "
            "requirements/pipeline.lock)"
        ) from exc
    home = Path(pyspark.__file__).parent
    if not (home / "bin" / "spark-class").exists():
        raise ClusterError(f"{home}: this pyspark has no bin/spark-class; reinstall pyspark")
    return home


def free_port() -> int:
    """A TCP port nobody listens on now (the OS's choice): tests never collide with a
    `make spark-up` cluster or another user's services on this shared machine."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process reusing the id: not ours
        return False
    return True


def read_state(state_dir: Path = DEFAULT_STATE) -> StandaloneCluster | None:
    """The cluster recorded in `state_dir` if any of its processes still runs, else None."""
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    cluster = StandaloneCluster(**{**d, "pids": tuple(d["pids"])})
    return cluster if any(_alive(p) for p in cluster.pids) else None


def _daemon_env(home: Path, state_dir: Path) -> dict[str, str]:
    conf = state_dir / "conf"  # empty: no spark-defaults or spark-env of the machine leak in
    conf.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_CONF_DIR": str(conf),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        # Executors launched by the workers run this interpreter (the locked env), unless the
        # driver says otherwise with spark.pyspark.python.
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
    }


def _spawn(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        # Own session: the daemons outlive `make spark-up` and a Ctrl-C in its terminal.
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _master_json(webui_url: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{webui_url}/json/", timeout=2) as r:
            return json.load(r)
    except OSError:
        return None


def alive_workers(webui_url: str) -> int:
    """Workers the master reports ALIVE (0 when the master does not answer)."""
    info = _master_json(webui_url)
    if not info:
        return 0
    return sum(1 for w in info.get("workers", []) if w.get("state") == "ALIVE")


def start_cluster(
    state_dir: Path = DEFAULT_STATE,
    workers: int = 2,
    worker_cores: int = 1,
    worker_memory: str = "2g",
    port: int | None = None,
    webui_port: int | None = None,
    timeout: float = 120.0,
) -> StandaloneCluster:
    """Start a master and `workers` workers on 127.0.0.1 and wait until all are ALIVE.

    Ports default to free ones. Raises ClusterError (naming the log to read) when a daemon
    exits or the workers do not register within `timeout` seconds; whatever started is
    stopped again then.
    """
    state_dir = Path(state_dir).resolve()
    running = read_state(state_dir)
    if running is not None:
        raise ClusterError(
            f"a cluster recorded in {state_dir} is already running at {running.master_url}; "
            "stop it first (`make spark-down`)"
        )
    home = spark_home()
    port = port or free_port()
    webui_port = webui_port or free_port()
    for p in (port, webui_port):
        if _port_taken(p):
            raise ClusterError(f"port {p} on {HOST} is in use; pick another (SPARK_PORT=...)")
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = _daemon_env(home, state_dir)
    spark_class = str(home / "bin" / "spark-class")
    master_url = f"spark://{HOST}:{port}"
    webui_url = f"http://{HOST}:{webui_port}"
    procs = [
        _spawn(
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", HOST,
             "--port", str(port), "--webui-port", str(webui_port)],
            env, logs / "master.log",
        )
    ]
    for i in range(workers):
        work = state_dir / f"worker-{i}"
        work.mkdir(exist_ok=True)
        procs.append(
            _spawn(
                [spark_class, "org.apache.spark.deploy.worker.Worker", master_url,
                 "--host", HOST, "--cores", str(worker_cores), "--memory", worker_memory,
                 "--webui-port", "0", "--work-dir", str(work)],
                env, logs / f"worker-{i}.log",
            )
        )
    cluster = StandaloneCluster(
        master_url=master_url,
        webui_url=webui_url,
        state_dir=str(state_dir),
        pids=tuple(p.pid for p in procs),
        workers=workers,
        worker_cores=worker_cores,
        worker_memory=worker_memory,
    )
    (state_dir / STATE_FILE).write_text(json.dumps(asdict(cluster), indent=1))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            stop_cluster(state_dir)
            raise ClusterError(
                f"a Spark daemon exited with status {dead[0].returncode} while starting; "
                f"read {logs}/ (is Java 17 on PATH? `java -version`)"
            )
        if alive_workers(webui_url) >= workers:
            return cluster
        time.sleep(0.5)
    stop_cluster(state_dir)
    raise ClusterError(
        f"the {workers} workers did not register with {master_url} within {timeout:.0f}s; "
        f"read {logs}/"
    )


def stop_cluster(state_dir: Path = DEFAULT_STATE, grace: float = 15.0) -> bool:
    """Stop the processes recorded in `state_dir` (TERM, then KILL after `grace` seconds).

    Returns False when nothing recorded was running. Only the recorded process ids are
    signalled, never processes found by name.
    """
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return False
    pids = json.loads(path.read_text())["pids"]
    running = [p for p in pids if _alive(p)]
    for pid in reversed(running):  # workers first, so the master does not log them as lost
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in running):
        _reap(running)
        time.sleep(0.2)
    for pid in running:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _reap(running)
    path.unlink()
    return bool(running)


def _reap(pids: list[int]) -> None:
    # Daemons started by this process are its children: collect their exit status so they
    # do not linger as zombies (which still look alive to os.kill(pid, 0)). Only our pids:
    # waiting on any child would steal other subprocesses' exit codes.
    for pid in pids:
        # Not our child (`make spark-down`) or already collected: nothing to do.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def check_master(master: str, timeout: float = 3.0) -> None:
    """Raise ClusterError (naming the URL and `make spark-up`) unless a standalone master at
    `master` (spark://host:port, or several for a standby setup) accepts connections.

    Without it a session on a dead master still starts, then waits ~60 s for a master that
    never answers before Spark gives up with a message that does not say which URL.
    Other masters (local[N], yarn, k8s://...) are not checked here.
    """
    if not master.startswith("spark://"):
        return
    refusals = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ClusterError(
                f"--master {master!r}: expected spark://HOST:PORT, e.g. spark://{HOST}:7077"
            )
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return
        except OSError as exc:
            refusals.append(f"{host}:{port} ({exc.strerror or exc})")
    raise ClusterError(
        f"no Spark master answers at {master}: {'; '.join(refusals)}. Start one on this "
        "machine with `make spark-up` (it prints the URL), or pass the URL of a running "
        "master (--master or SPARK_MASTER)"
    )


def spark_session(
    master: str,
    app_name: str = "mlplatform",
    driver_memory: str = "1g",
    executor_memory: str = "1g",
    conf: dict[str, str] | None = None,
    executor_wait: float | None = None,
):
    """A SparkSession on `master` with the platform's settings.

    Executors run the interpreter of PYSPARK_PYTHON, default this one (the locked env: on a
    real cluster the same path must exist on every node, or set PYSPARK_PYTHON). Times are
    UTC so day boundaries match the pandas build. Memory stays bounded: the executor heap is
    below the worker's offer, leaving room for the Python workers beside it. A spark:// master
    that does not answer raises ClusterError at once (`check_master`), and one that gives the
    job no executor within `executor_wait` seconds (default `default_executor_wait`) raises it
    then, with the session stopped (`await_executors`).
    """
    from pyspark.sql import SparkSession

    check_master(master)
    python = os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # PySpark's driver sends the executors its PYSPARK_PYTHON (default: `python3` on their
    # PATH, some other interpreter without our packages); the conf key alone does not do it.
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.driver.memory", driver_memory)
        .config("spark.executor.memory", executor_memory)
        .config("spark.executor.cores", "1")
        .config("spark.pyspark.python", python)
        .config("spark.pyspark.driver.python", sys.executable)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        # Parquet timestamps as UTC instants (not Spark's legacy INT96), so pandas reads them
        # back tz-aware like local scoring's output.
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    )
    if master.startswith(f"spark://{HOST}:"):  # loopback cluster: keep the driver there too
        builder = builder.config("spark.driver.host", HOST).config(
            "spark.driver.bindAddress", HOST
        )
    for k, v in (conf or {}).items():
        builder = builder.config(k, v)
    session = builder.getOrCreate()
    if master.startswith("spark://"):
        wait = executor_wait if executor_wait is not None else default_executor_wait()
        try:
            await_executors(session, master, wait, executor_memory)
        except ClusterError:
            session.stop()
            raise
    return session


def default_executor_wait() -> float:
    """Seconds a job waits for its first executor: MLPLATFORM_SPARK_EXECUTOR_WAIT, else 120."""
    raw = os.environ.get("MLPLATFORM_SPARK_EXECUTOR_WAIT", "120")
    try:
        return float(raw)
    except ValueError:
        raise ClusterError(
            f"MLPLATFORM_SPARK_EXECUTOR_WAIT={raw!r}: expected a number of seconds"
        ) from None


def executors(session) -> int:
    """Executors registered with this session's driver (the driver itself not counted)."""
    # The block managers of the driver and of every live executor.
    return max(session.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1, 0)


def await_executors(session, master: str, wait: float, executor_memory: str) -> int:
    """Wait up to `wait` seconds for the master to give `session` an executor; raise
    ClusterError (saying why and what to do) when none comes.

    A standalone master that has no free core, or no worker offering the executor's memory,
    keeps a job waiting with no end and only a log warning ("Initial job has not accepted
    any resources"); a command should fail and say so instead.
    """
    deadline = time.monotonic() + wait
    while not (n := executors(session)) and time.monotonic() < deadline:
        time.sleep(0.25)
    if n:
        return n
    raise ClusterError(
        f"the Spark master at {master} gave this job no executor within {wait:.0f}s: every "
        "worker's cores are taken by other applications, or no worker offers "
        f"{executor_memory} of memory and a free core. Look at the master's web UI "
        "(applications and workers), stop what holds the workers or add workers; "
        "MLPLATFORM_SPARK_EXECUTOR_WAIT sets how long to wait"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlplatform.spark.cluster",
        description=(
            "Start, inspect or stop a Spark standalone cluster on 127.0.0.1 (one master, N "
            "workers) from the installed PySpark. Pass its master URL to "
            "`mlplatform score IN OUT --engine spark --master URL`."
        ),
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE,
                        help=f"where pids and logs go (default {DEFAULT_STATE})")
    parser.add_argument("--workers", type=int, default=2, help="worker daemons (default 2)")
    parser.add_argument("--worker-cores", type=int, default=1, help="cores per worker (1)")
    parser.add_argument("--worker-memory", default="2g", help="memory per worker (2g)")
    parser.add_argument("--port", type=int, default=7077, help="master port (7077)")
    parser.add_argument("--webui-port", type=int, default=8090,
                        help="master web UI port (8090; 8080 is `make serve`'s)")
    a = parser.parse_args(argv)
    try:
        if a.action == "up":
            c = start_cluster(a.state, a.workers, a.worker_cores, a.worker_memory,
                              a.port, a.webui_port)
            print(f"master {c.master_url} (web UI {c.webui_url}), {c.workers} workers x "
                  f"{c.worker_cores} core / {c.worker_memory}; logs in {a.state}/logs")
        elif a.action == "down":
            print("stopped" if stop_cluster(a.state) else f"no cluster recorded in {a.state}")
        else:
            c = read_state(a.state)
            if c is None:
                print(f"no cluster running (recorded in {a.state}); `make spark-up` starts one")
                return 1
            print(f"master {c.master_url}, {alive_workers(c.webui_url)}/{c.workers} workers "
                  f"alive, web UI {c.webui_url}")
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
