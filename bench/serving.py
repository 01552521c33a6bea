"""The model server against `mlflow models serve` and a bare ASGI floor, side by side in one run.

One registered taxi artifact (trained here in a temporary home, or `--model-uri`) is served on
loopback by (a) our KServe-protocol server, as one process and with `--workers 2`, (b) `mlflow
models serve --env-manager local`, (c) an echo app on the same Starlette + uvicorn process
model, the floor, and (d) our router in front of (a). Each gets fixed-rate open-loop loads of
single-row requests, then a closed-loop maximum-throughput run; then a bad challenger (fault
proxy) goes through a canary at 100 req/s until the controller rolls it back. Prints markdown
tables and PASS/FAIL against the goals; it is a report and exits 0 whatever the numbers say.

    .venv/bin/python bench/serving.py [--rates 100,500,1000] [--duration 5] [--out out.json]

The load generator and the echo floor live in bench/loadgen.py, each run as its own process:
the client sends each request at its scheduled time and measures latency from that time, so a
server that falls behind shows its queue in the figures (no coordinated omission). Its own
lateness and CPU share are reported, and the echo floor shows what it can drive.
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
import tempfile
import time
from pathlib import Path

from mlplatform.release.local_stack import READY

REPO = Path(__file__).resolve().parents[1]
LOADGEN = Path(__file__).resolve().parent / "loadgen.py"  # the client and the echo floor
SERVING_BIN = REPO / ".venv-serving" / "bin"
SERVING_PY = SERVING_BIN / "python"
MODEL_NAME = "taxi"
OURS_PATH = f"/v1/models/{MODEL_NAME}:predict"
# The goals of the serving issue, for one model server on 2 cores.
GOAL_RATE, GOAL_P50_MS, GOAL_P99_MS, GOAL_TP_RATIO = 500, 3.0, 10.0, 3.0
MAX_CONNECTIONS = 256  # open loop: beyond this a request waits for a connection (and it counts)
REQUEST_TIMEOUT_S = 10.0  # a request slower than this is an error, not a latency
# The client's own lateness allowed before it counts as the bottleneck: uvloop's timers fire on
# whole milliseconds, so ~1 ms of it is the timer, not load. It adds to every latency measured.
CLIENT_MAX_LAG_MS = 2.0
clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds: too coarse here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on loopback and the request each load sends it."""

    def __init__(self, name, cmd, ready_path, path, body, logdir, env=None) -> None:
        self.name, self.path, self.body = name, path, body
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ready_url = self.base + ready_path
        self.log = logdir / f"{name}.log"
        cmd = [str(c).replace("{port}", str(self.port)) for c in cmd]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )

    def wait_ready(self, timeout: float = 180.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(self.ready_url, timeout=2).read()
                return
            time.sleep(0.3)
        raise SystemExit(f"{self.name} not ready within {timeout} s ({self.log})")

    def check(self) -> str:
        """One request, answered 200, before any load (a benchmark of errors proves nothing)."""
        import urllib.request

        req = urllib.request.Request(
            self.base + self.path, self.body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()[:200]

    def cpu_s(self) -> float:
        """CPU seconds used so far by the process and its children (mlflow's CLI forks its
        uvicorn), read from /proc."""
        ticks, pids = 0, {self.proc.pid}
        stats = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
        while True:  # descendants: processes whose parent is already in the set
            more = {pid for pid, (ppid, _) in stats.items() if ppid in pids} - pids
            if not more:
                break
            pids |= more
        ticks = sum(stats[pid][1] for pid in pids if pid in stats)
        return ticks / os.sysconf("SC_CLK_TCK")

    def settle(self, timeout: float = 90.0) -> None:
        """Wait until the server is idle (under 10% of a core): the next run starts clean."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.cpu_s()
            time.sleep(0.5)
            if self.cpu_s() - before < 0.05:
                return

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def load(server: Server, tmp: Path, warmup: float = 0.0, **opts) -> dict:
    """Run the load generator against `server` in its own process; its JSON summary, plus the
    server's CPU per request sent (measured until it has worked off its queue)."""
    body = tmp / f"{server.name}.json"
    body.write_bytes(server.body)
    cmd = [sys.executable, str(LOADGEN), "_loadgen", "--port", server.port, "--path", server.path]
    cmd += ["--body", body, "--warmup", 0, *(x for k, v in opts.items() for x in (f"--{k}", v))]
    cmd = [str(c) for c in cmd]
    if warmup > 0:  # a run of its own, so its CPU stays out of the figure
        subprocess.run(cmd + ["--duration", str(warmup)], capture_output=True, timeout=300)
        server.settle()
    cpu0 = server.cpu_s()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    server.settle()  # queued requests are still served after the client gave up on them
    cpu = server.cpu_s() - cpu0
    if out.returncode != 0:
        raise SystemExit(f"load generator failed: {out.stderr[-3000:]}")
    res = json.loads(out.stdout)
    # A router's figure is its own process only, not the model server's behind it.
    res["server_cpu_ms_per_request"] = round(1000 * cpu / max(res["sent"], 1), 3)
    return res


def prepare_model(home: Path) -> tuple[str, str]:
    """Gate, features and one logistic candidate in `home`, registered; (tracking, model) URIs."""
    from mlplatform.jobs.data import features_job, gate_for, source_path
    from mlplatform.jobs.models import train_candidate
    from mlplatform.registry import models as reg

    gate = gate_for(MODEL_NAME, home)
    if not gate.process(source_path(gate.spec, None)).accepted:
        raise SystemExit("the shipped taxi data was quarantined")
    features_job(MODEL_NAME, home, home / "ts.parquet")
    run = train_candidate(MODEL_NAME, "logistic", home / "ts.parquet", home)
    tags = {"family": "logistic", "selection_quality": "0.9"}
    version = reg.register(gate.spec, run.run_id, run.model_uri, tags)
    tracking = f"sqlite:///{(home / 'mlflow' / 'mlflow.db').resolve()}"
    return tracking, f"models:/{MODEL_NAME}-classifier/{version}"


def example_row(tracking: str, model_uri: str) -> dict:
    """One row of the artifact's input example without missing values."""
    import mlflow

    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    example = mlflow.pyfunc.load_model(model_uri).input_example
    rows = json.loads(example.to_json(orient="records"))
    return next((r for r in rows if None not in r.values()), rows[0])


def start_servers(
    tracking: str, model_uri: str, row: dict, logdir: Path, before: Path | None = None
) -> dict[str, Server]:
    """Ours, mlflow's, the echo floor and the router in front of ours, all started at once;
    with `before`, also that folder's server.py and router.py as `ours-before` and
    `router-before` (an earlier version, side by side)."""
    v1 = json.dumps({"instances": [row]}).encode()
    split = {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}}
    py, model = str(SERVING_PY), ["--model-name", MODEL_NAME, "--model-uri", model_uri]
    ours = Server(
        "ours",
        [py, "-m", "mlplatform.serving.server", *model, "--tracking-uri", tracking]
        + ["--port", "{port}"],
        READY["model"],
        OURS_PATH,
        v1,
        logdir,
    )
    servers = {
        "ours": ours,
        # The same server with a worker process per core (--workers 2), one port between them.
        "ours-2w": Server(
            "ours-2w",
            [py, "-m", "mlplatform.serving.server", *model, "--tracking-uri", tracking]
            + ["--workers", "2", "--port", "{port}"],
            READY["model"],
            OURS_PATH,
            v1,
            logdir,
        ),
        # mlflow's server resolves models:/ through its own variable; only this child sees it.
        "mlflow": Server(
            "mlflow",
            [SERVING_BIN / "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
            + ["-h", "127.0.0.1", "-p", "{port}", "-w", "1"],
            "/ping",
            "/invocations",
            json.dumps(split).encode(),
            logdir,
            env={"MLFLOW_TRACKING_URI": tracking, "PATH": f"{SERVING_BIN}:{os.environ['PATH']}"},
        ),
        "floor": Server(
            "floor",
            [py, str(LOADGEN), "_echo", "--port", "{port}"],
            "/ready",
            OURS_PATH,
            v1,
            logdir,
        ),
        "router": Server(
            "router",
            [py, "-m", "mlplatform.release.router", "--champion", ours.base]
            + ["--challenger", ours.base, "--challenger-percent", "0", "--port", "{port}"],
            READY["router"],
            OURS_PATH,
            v1,
            logdir,
        ),
    }
    if before is not None:
        old = Server(
            "ours-before",
            [py, before / "server.py", *model, "--tracking-uri", tracking, "--port", "{port}"],
            READY["model"],
            OURS_PATH,
            v1,
            logdir,
        )
        servers["ours-before"] = old
        servers["router-before"] = Server(
            "router-before",
            [py, before / "router.py", "--champion", old.base, "--challenger", old.base]
            + ["--challenger-percent", "0", "--port", "{port}"],
            READY["router"],
            OURS_PATH,
            v1,
            logdir,
        )
    for s in servers.values():
        s.wait_ready()
        s.check()
    return servers


def bench_canary(ours: Server, case: str, faults: list[str], policy, rate: float, tmp: Path):
    """A bad challenger (a fault proxy in front of `ours`) canaried until it is rolled back."""
    from mlplatform.release.canary import CanaryController, LocalRouterBackend, MetricsSource

    py = str(SERVING_PY)
    ours.settle()  # the previous case's queue is worked off before this one is judged
    proxy = Server(
        f"faults-{case}",
        [py, "-m", "mlplatform.release.faults", "--upstream", ours.base, "--seed", "7"]
        + [*faults, "--port", "{port}"],
        READY["faults"],
        OURS_PATH,
        ours.body,
        tmp,
    )
    router = Server(
        f"router-{case}",
        [py, "-m", "mlplatform.release.router", "--champion", ours.base]
        + ["--challenger", proxy.base, "--challenger-percent", "0", "--port", "{port}"],
        READY["router"],
        OURS_PATH,
        ours.body,
        tmp,
    )
    lines: list[str] = []
    try:
        proxy.wait_ready(60)
        router.wait_ready(60)
        body = tmp / f"canary-{case}.json"
        body.write_bytes(ours.body)
        cmd = [sys.executable, str(LOADGEN), "_loadgen", "--port", router.port, "--path", OURS_PATH]
        cmd += ["--body", body, "--rate", rate, "--duration", 120, "--warmup", 0]
        gen = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)  # traffic is flowing before the canary starts, as in production
        controller = CanaryController(
            policy,
            LocalRouterBackend(router.base),
            MetricsSource(
                f"{router.base}/metrics",
                {"champion": f"{ours.base}/metrics", "challenger": f"{proxy.base}/metrics"},
                kpi_labels={"model": MODEL_NAME},
            ),
            ready_urls={"champion": ours.ready_url, "challenger": proxy.base + READY["model"]},
            log=lines.append,
        )
        result = controller.run()
        time.sleep(0.5)  # and after the decision: the switch must not fail a request
        gen.send_signal(signal.SIGTERM)
        client = json.loads(gen.communicate(timeout=60)[0])
    finally:
        router.stop()
        proxy.stop()
    return {
        "case": case,
        "faults": faults,
        "status": result.status,
        "seconds_to_decision": round(result.duration_s, 2),
        "rounds": len(result.rounds),
        "reason": result.reason,
        "log": lines,
        "client": client,
    }


def ratio(a, b) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:,.2f}{unit}" if isinstance(v, float) else f"{v:,}{unit}"


def report(res: dict) -> dict:
    """Print the tables; return the goals with PASS/FAIL."""
    rates = res["config"]["rates"]
    by = {(r["target"], r["rate"]): r for r in res["open_loop"]}
    print(
        f"\nserving, loopback, {res['machine']['cpus']} CPUs, load average before/after: "
        f"{res['machine']['loadavg_before']} / {res['machine']['loadavg_after']}"
    )
    print("\n### fixed-rate open loop, single-row requests, latency from the scheduled send\n")
    print(
        "| target | req/s | achieved | p50 ms | p99 ms | max ms | errors | server CPU ms/req "
        "| client lag p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res["open_loop"]:
        print(
            f"| {r['target']} | {r['rate']:g} | {fmt(r['achieved_rps'])} | {fmt(r['p50_ms'])} "
            f"| {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {r['errors']} "
            f"| {fmt(r['server_cpu_ms_per_request'])} | {fmt(r['send_lag_p99_ms'])} |"
        )
    print(
        "\n| req/s | p50 ours/mlflow | p99 ours/mlflow | p50 ours/floor | p99 ours/floor "
        "| p50 router/ours | p99 router/ours |"
    )
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for rate in rates:
        o, m, f, rt = (by.get((t, rate), {}) for t in ("ours", "mlflow", "floor", "router"))
        row = {"rate": rate}
        for q in ("p50_ms", "p99_ms"):
            row[f"{q}_ours_over_mlflow"] = ratio(o.get(q), m.get(q))
            row[f"{q}_ours_over_floor"] = ratio(o.get(q), f.get(q))
            row[f"{q}_router_over_ours"] = ratio(rt.get(q), o.get(q))
        ratios.append(row)
        print(
            f"| {rate:g} | {fmt(row['p50_ms_ours_over_mlflow'], 'x')} "
            f"| {fmt(row['p99_ms_ours_over_mlflow'], 'x')} "
            f"| {fmt(row['p50_ms_ours_over_floor'], 'x')} "
            f"| {fmt(row['p99_ms_ours_over_floor'], 'x')} "
            f"| {fmt(row['p50_ms_router_over_ours'], 'x')} "
            f"| {fmt(row['p99_ms_router_over_ours'], 'x')} |"
        )
    res["ratios"] = ratios
    if any(t.endswith("-before") for t, _ in by):
        print("\n| req/s | target | p50 after/before | p99 after/before | CPU/req after/before |")
        print("|---|---|---|---|---|")
        for rate in rates:
            for name in ("ours", "router"):
                new, old = by.get((name, rate), {}), by.get((f"{name}-before", rate), {})
                cells = [
                    fmt(ratio(new.get(k), old.get(k)), "x")
                    for k in ("p50_ms", "p99_ms", "server_cpu_ms_per_request")
                ]
                print(f"| {rate:g} | {name} | " + " | ".join(cells) + " |")
    conns = res["config"]["connections"]
    print(f"\n### maximum throughput, closed loop, {conns} keep-alive connections\n")
    print(
        "| target | req/s | p50 ms | p99 ms | errors | / mlflow | / floor | server CPU ms/req "
        "| client CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    tp = {r["target"]: r for r in res["closed_loop"]}
    mlflow_tp, floor_tp = (tp.get(t, {}).get("achieved_rps") for t in ("mlflow", "floor"))
    for name, r in tp.items():
        print(
            f"| {name} | {fmt(r['achieved_rps'])} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} "
            f"| {r['errors']} | {fmt(ratio(r['achieved_rps'], mlflow_tp), 'x')} "
            f"| {fmt(ratio(r['achieved_rps'], floor_tp), 'x')} "
            f"| {fmt(r['server_cpu_ms_per_request'])} | {r['client_cpu']:.0%} |"
        )
    if res["canary"]:
        print(
            f"\n### canary rollback of a bad challenger at {res['config']['canary_rate']:g} "
            f"req/s ({res['config']['canary_policy']})\n"
        )
        print("| fault | decision | seconds | rounds | client errors | reason |")
        print("|---|---|---|---|---|---|")
        for c in res["canary"]:
            print(
                f"| {' '.join(c['faults'])} | {c['status']} | {c['seconds_to_decision']:.1f} "
                f"| {c['rounds']} | {c['client']['errors']} | {c['reason'][:160]} |"
            )
    return goals(res, by, tp)


def goals(res: dict, by: dict, tp: dict) -> dict:
    def at_goal(target: str) -> tuple[bool | None, str]:
        r = by.get((target, GOAL_RATE))
        if r is None:
            return None, f"{GOAL_RATE} req/s or {target} not run"
        ok = (
            r["p50_ms"] is not None
            and r["p50_ms"] <= GOAL_P50_MS
            and r["p99_ms"] <= GOAL_P99_MS
            and r["errors"] == 0
            and r["achieved_rps"] >= 0.95 * GOAL_RATE
        )
        return ok, f"p50 {fmt(r['p50_ms'])} ms, p99 {fmt(r['p99_ms'])} ms, {r['errors']} errors"

    tp_ratio = ratio(
        tp.get("ours", {}).get("achieved_rps"), tp.get("mlflow", {}).get("achieved_rps")
    )
    floor_top = by.get(("floor", max(res["config"]["rates"])), {})
    top = max(res["config"]["rates"])
    client_ok = (
        floor_top.get("send_lag_p99_ms") is not None
        and floor_top["send_lag_p99_ms"] <= CLIENT_MAX_LAG_MS
        and floor_top["achieved_rps"] >= 0.98 * top
    )
    out = {}
    for target in ("ours", "ours-2w", "router"):
        ok, why = at_goal(target)
        out[
            f"{target}: p50 <= {GOAL_P50_MS:g} ms and p99 <= {GOAL_P99_MS:g} ms at "
            f"{GOAL_RATE} req/s"
        ] = ("n/a" if ok is None else "PASS" if ok else "FAIL", why)
    out[f"ours: max throughput >= {GOAL_TP_RATIO:g}x mlflow models serve"] = (
        "PASS" if tp_ratio is not None and tp_ratio >= GOAL_TP_RATIO else "FAIL",
        f"{fmt(tp_ratio, 'x')}",
    )
    tp2_ratio = ratio(
        tp.get("ours-2w", {}).get("achieved_rps"), tp.get("mlflow", {}).get("achieved_rps")
    )
    if tp2_ratio is not None:
        out[f"ours-2w: max throughput >= {GOAL_TP_RATIO:g}x mlflow models serve"] = (
            "PASS" if tp2_ratio >= GOAL_TP_RATIO else "FAIL",
            f"{fmt(tp2_ratio, 'x')}",
        )
    for c in res["canary"]:
        ok = c["status"] == "rolled_back" and c["seconds_to_decision"] <= 30
        out[f"canary: bad challenger ({' '.join(c['faults'])}) rolled back within 30 s"] = (
            "PASS" if ok else "FAIL",
            f"{c['status']} in {c['seconds_to_decision']:.1f} s, {c['client']['errors']} "
            "client errors",
        )
    out[
        f"load generator not the bottleneck (floor at {top:g} req/s: lag p99 <= "
        f"{CLIENT_MAX_LAG_MS:g} ms)"
    ] = (
        "PASS" if client_ok else "FAIL",
        f"lag p99 {fmt(floor_top.get('send_lag_p99_ms'))} ms, achieved "
        f"{fmt(floor_top.get('achieved_rps'))} req/s",
    )
    print("\n### goals\n")
    for goal, (verdict, why) in out.items():
        print(f"- {verdict} {goal}: {why}")
    return out


CANARY_CASES = {
    "latency": ["--add-latency-ms", "20"],  # past the 10 ms p99 budget and 1.1x the champion
    "errors": ["--error-rate", "0.05"],  # the 5% errors
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="100,500,1000", help="open-loop request rates, req/s")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per rate and target")
    ap.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds before each")
    ap.add_argument("--connections", type=int, default=16, help="closed-loop connections")
    ap.add_argument("--targets", default="ours,ours-2w,mlflow,floor,router")
    ap.add_argument(
        "--before",
        type=Path,
        help="a folder with an earlier server.py and router.py (git show REV:src/mlplatform/"
        "serving/server.py > DIR/server.py), also measured, as ours-before and router-before",
    )
    ap.add_argument("--model-uri", help="models:/... to serve instead of training one")
    ap.add_argument("--tracking-uri", help="the registry of --model-uri")
    ap.add_argument("--canary", default=",".join(CANARY_CASES), help="fault cases, or ''")
    ap.add_argument("--canary-rate", type=float, default=100.0)
    ap.add_argument("--canary-percent", type=int, default=10)
    ap.add_argument("--canary-interval", type=float, default=3.0)
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    if not SERVING_PY.exists():
        raise SystemExit(f"{SERVING_PY} is missing: `make setup-serving` builds it")
    if bool(args.model_uri) != bool(args.tracking_uri):
        raise SystemExit("--model-uri and --tracking-uri go together")
    from mlplatform.release.canary import CanaryPolicy

    # 10% of 100 req/s in 3 s rounds is 30 challenger requests a round (20 are needed).
    policy = CanaryPolicy(
        challenger_percent=args.canary_percent,
        interval_s=args.canary_interval,
        warmup_s=0.5,
        failure_threshold=2,
    )
    rates = [float(r) for r in args.rates.split(",")]
    targets = args.targets.split(",")
    if args.before:
        targets += [f"{t}-before" for t in ("ours", "router") if t in targets]
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as d:
        tmp = Path(d)
        if args.model_uri:
            tracking, model_uri = args.tracking_uri, args.model_uri
        else:
            tracking, model_uri = prepare_model(tmp / "home")
        row = example_row(tracking, model_uri)
        res = {
            "machine": {"cpus": len(os.sched_getaffinity(0)), "loadavg_before": _load()},
            "config": {
                "model_uri": model_uri,
                "rates": rates,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "connections": args.connections,
                "canary_rate": args.canary_rate,
                "canary_policy": (
                    f"{policy.challenger_percent}% challenger, {policy.interval_s:g} s rounds, "
                    f"{policy.failure_threshold} failed rounds roll back"
                ),
            },
            "row": row,
            "open_loop": [],
            "closed_loop": [],
            "canary": [],
        }
        servers = start_servers(tracking, model_uri, row, tmp, args.before)
        try:
            # Rates outer, targets inner: a noisy neighbour's burst lands on all of them alike.
            for rate in rates:
                for name in targets:
                    out = load(
                        servers[name], tmp, warmup=args.warmup, rate=rate, duration=args.duration
                    )
                    res["open_loop"].append({"target": name, "rate": rate, **out})
                    print(f"open  {name:<7} {rate:>6g} req/s: {_brief(out)}", flush=True)
            for name in targets:
                out = load(
                    servers[name],
                    tmp,
                    mode="closed",
                    connections=args.connections,
                    duration=args.duration,
                )
                res["closed_loop"].append({"target": name, **out})
                print(f"closed {name:<7}: {_brief(out)}", flush=True)
            for case in filter(None, args.canary.split(",")):
                c = bench_canary(
                    servers["ours"], case, CANARY_CASES[case], policy, args.canary_rate, tmp
                )
                res["canary"].append(c)
                print(f"canary {case}: {c['status']} in {c['seconds_to_decision']} s", flush=True)
        finally:
            for s in servers.values():
                s.stop()
        res["machine"]["loadavg_after"] = _load()
        res["goals"] = report(res)
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _brief(r: dict) -> str:
    return (
        f"{r['achieved_rps']:.0f} req/s, p50 {fmt(r['p50_ms'])} ms, p99 {fmt(r['p99_ms'])} ms, "
        f"{r['errors']} errors, lag p99 {fmt(r['send_lag_p99_ms'])} ms"
    )


if __name__ == "__main__":
    main()
