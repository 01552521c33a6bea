"""`mlplatform monitor` commands (registered by mlplatform.cli): Prometheus for a running
model server, drift of a request log, delayed labels, the trigger log, and the replay."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from mlplatform.cli.common import HomeOpt, UsecaseOpt, fail, home_of, spec_of
from mlplatform.workspace import Workspace

monitor_app = typer.Typer(
    help="Monitoring: Prometheus, drift, delayed labels, retraining triggers, replay.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(monitor_app, name="monitor")


@monitor_app.command("prometheus")
def prometheus_cmd(
    server: Annotated[
        list[str], typer.Option("--server", help="host:port of a model server (repeatable)")
    ] = None,
    router: Annotated[list[str], typer.Option("--router", help="host:port of a router")] = None,
    exporter: Annotated[
        list[str], typer.Option("--exporter", help="host:port of a monitoring exporter")
    ] = None,
    port: Annotated[int, typer.Option(help="Prometheus port on 127.0.0.1")] = 9090,
    interval: Annotated[float, typer.Option(help="Scrape interval, seconds")] = 5.0,
    workdir: Annotated[
        Path | None, typer.Option(help="Config + TSDB folder (default: temp)")
    ] = None,
) -> None:
    """Start Prometheus scraping the given targets with the repo's rules; Ctrl-C stops it."""
    from mlplatform.monitoring.prometheus import PrometheusError, PrometheusServer, ScrapeTargets

    targets = ScrapeTargets(tuple(server or ()), tuple(router or ()), tuple(exporter or ()))
    if not targets.jobs():
        fail("no targets: give --server 127.0.0.1:8080 (and/or --router, --exporter)")
    prom = PrometheusServer(targets, port=port, workdir=workdir, scrape_interval_s=interval)
    try:
        prom.start()
    except PrometheusError as exc:
        fail(str(exc))
    typer.echo(f"Prometheus UI: {prom.url}  (config {prom.config_path})")
    typer.echo(f"  alerts: {prom.url}/alerts   targets: {prom.url}/targets   Ctrl-C stops it")
    try:
        while prom.proc is not None and prom.proc.poll() is None:
            time.sleep(1)
        fail(f"prometheus exited; see {prom.log_path}")
    except KeyboardInterrupt:
        pass
    finally:
        prom.stop()


@monitor_app.command("drift")
def drift_cmd(
    log_dir: Annotated[Path, typer.Argument(help="The model server's --request-log folder")],
    training_set: Annotated[Path, typer.Option(help="Training set parquet (the reference)")],
    usecase: UsecaseOpt = "taxi",
    since: Annotated[float | None, typer.Option(help="Unix seconds: window start")] = None,
    report: Annotated[Path | None, typer.Option(help="Also write an Evidently HTML here")] = None,
) -> None:
    """Drift of a window of logged requests against the training data, per feature."""
    import pandas as pd

    from mlplatform.data.drift import ReferenceProfile
    from mlplatform.monitoring.drift import monitored_columns, served_drift
    from mlplatform.monitoring.windows import read_log

    spec = spec_of(usecase)
    if not training_set.is_file():
        fail(f"{training_set}: no such training set")
    window = read_log(log_dir, since=since)
    if window.empty:
        fail(f"{log_dir}: no logged requests (start the server with --request-log {log_dir})")
    train = pd.read_parquet(training_set)
    scores = served_drift(ReferenceProfile.fit(train, spec), window, spec)
    typer.echo(f"{len(window)} logged rows vs {len(train)} training rows")
    for d in sorted(scores, key=lambda d: -d.score):
        flag = "DRIFT" if d.drifted else "ok"
        act = "triggers" if d.triggers else "shown"
        typer.echo(f"  {d.feature:24} {d.measure:15} {d.score:.4f} / {d.threshold} {flag} ({act})")
    if report is not None:
        from mlplatform.monitoring.reports import evidently_report

        cols = monitored_columns(spec, [c for c in window.columns if c in train.columns])
        evidently_report(train, window, cols, report)
        typer.echo(f"Evidently report: {report}")


@monitor_app.command("labels")
def labels_cmd(
    labels_file: Annotated[
        Path,
        typer.Argument(help="JSON lines: request_id, row, label (0/1 or the spec's class names)"),
    ],
    usecase: UsecaseOpt = "taxi",
    home: HomeOpt = None,
) -> None:
    """Append delayed labels to the use case's label log (joined by request id)."""
    from mlplatform.monitoring.performance import LabelLog

    spec = spec_of(usecase)
    path = Workspace.locate(home_of(home), spec.name).monitoring / "labels.jsonl"
    try:
        items = [json.loads(line) for line in labels_file.read_text().splitlines() if line.strip()]
        n = LabelLog(path, spec.label_spec).append(items)
    except (OSError, ValueError) as exc:
        fail(f"{labels_file}: {exc}")
    typer.echo(f"{n} labels appended to {path}")


@monitor_app.command("triggers")
def triggers_cmd(
    usecase: UsecaseOpt = "taxi",
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Every retraining trigger with its evidence and what came of it."""
    from mlplatform.monitoring.triggers import TriggerLog, trigger_log_path

    spec = spec_of(usecase)
    path = trigger_log_path(home_of(home), spec.name)
    records = TriggerLog(path).read()
    if not records:
        typer.echo(f"no triggers yet ({path})")
        return
    for r in records:
        if as_json:
            typer.echo(json.dumps(r))
            continue
        typer.echo(f"{r['at']}  window {r['window']}  {r['reason']}: {r['message']}")
        for key in ("held", "retrained_version", "registry_gate", "canary"):
            if r.get(key) not in (None, ""):
                typer.echo(f"    {key}: {r[key]}")


@monitor_app.command("once")
def once_cmd(
    usecase: UsecaseOpt = "taxi",
    home: HomeOpt = None,
    request_log: Annotated[
        Path | None,
        typer.Option(
            help="The request-log folder (default: <home>/<usecase>/monitoring/requests, where "
            "`make serve` and the cluster's payload logger write)."
        ),
    ] = None,
    families: Annotated[
        str, typer.Option(help="Families a retraining trains, comma-separated.")
    ] = "logistic,xgboost,keras",
    min_rows: Annotated[int, typer.Option(help="Fewer new rows: the window stays open.")] = 100,
    new_labels: Annotated[int, typer.Option(help="Labels since training that trigger.")] = 5000,
    drift_windows: Annotated[int, typer.Option(help="Drifted windows in a row to trigger.")] = 1,
    canary_percent: Annotated[int, typer.Option(help="Share the canary request asks for.")] = 5,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Stream every task's output, as kfp.local prints it (default: one line per "
            "task with its result; the full output goes to a log file).",
        ),
    ] = False,
) -> None:
    """Run the monitoring pipeline once with kfp.local: judge the traffic logged since the
    last run; when a trigger fires, retrain, gate and request a canary."""
    from mlplatform.jobs.monitoring import parse_families
    from mlplatform.monitoring.triggers import TriggerPolicy
    from mlplatform.monitoring.watch import WindowVerdict, state_path

    spec = spec_of(usecase)
    h = home_of(home).resolve()
    ws = Workspace.locate(h, spec.name)
    log_dir = (request_log or ws.requests).resolve()
    try:
        parse_families(families)
        TriggerPolicy(min_rows=min_rows, new_labels=new_labels, drift_windows=drift_windows)
    except ValueError as exc:
        fail(str(exc))
    if not 1 <= canary_percent <= 100:
        fail(f"--canary-percent {canary_percent}: expected 1..100")
    if not log_dir.is_dir():
        fail(
            f"{log_dir}: no request log yet. Serve with logging on (`make serve` writes there; "
            f"or `mlplatform.serving.server --request-log {log_dir}`), or pass --request-log"
        )
    try:
        from pipelines.local import run_monitoring, task_names
    except ImportError as exc:
        fail(f"the pipelines package is not importable ({exc}); run from the repository root")
    from mlplatform.cli.run_view import log_tail, run_shown
    from mlplatform.jobs.progress import monitoring_results

    typer.echo(f"running pipeline mlplatform-monitoring for {spec.name} on {log_dir}")
    started = time.time()
    log_path = ws.pipeline_runs / "logs" / f"monitoring-{time.strftime('%Y%m%d-%H%M%S')}.log"
    verbose = verbose or logging.getLogger().level <= logging.DEBUG

    def pipeline() -> None:
        run_monitoring(
            spec.name, h, ws.pipeline_runs, request_log=str(log_dir), families=families,
            min_rows=min_rows, new_labels=new_labels, drift_windows=drift_windows,
            canary_percent=canary_percent,
        )

    try:
        run_shown(
            pipeline, task_names("monitoring"), monitoring_results(spec, h, started), log_path,
            verbose,
        )
    except Exception as exc:  # noqa: BLE001 - kfp raises RuntimeError with the task's name
        tail = "" if verbose else f"\nthe log's end ({log_path}):\n{log_tail(log_path)}"
        fail(
            f"monitoring pipeline failed: {exc}{tail}\nrun it again: rows already judged are "
            "not judged twice, and a retraining that did not finish is asked for again", 1
        )
    windows = sorted((ws.monitoring / "windows").glob("window-*.json"))
    if windows:
        verdict = WindowVerdict(**json.loads(windows[-1].read_text()))
        typer.echo(
            f"\nwindow {verdict.window}: {verdict.rows} rows, "
            f"retrain {'yes' if verdict.retrain else 'no'}"
        )
        typer.echo(verdict.summary())
    typer.echo(f"state: {state_path(h, spec.name)}")
    typer.echo(f"triggers: mlplatform monitor triggers --usecase {spec.name}")


@monitor_app.command("simulate")
def simulate_cmd(
    home: HomeOpt = None,
    drift_from: Annotated[
        str, typer.Option(help="YYYY-MM the drift starts; 'none' for no injected drift")
    ] = "2015-06",
    drift_column: Annotated[str, typer.Option(help="Column to scale")] = "fare",
    drift_factor: Annotated[float, typer.Option(help="Scale factor")] = 10.0,
    initial_months: Annotated[int, typer.Option(help="Months the first model trains on")] = 12,
    canary: Annotated[bool, typer.Option(help="Canary on real servers before promotion")] = True,
) -> None:
    """Replay the taxi timeline month by month: drift, triggers, retraining, gate, canary."""
    from mlplatform.monitoring.replay.driver import ReplayConfig, run_replay

    spec = spec_of("taxi")
    if drift_column not in {c.name for c in spec.feature_columns}:
        fail(f"--drift-column {drift_column!r} is not a feature of {spec.name}")
    cfg = ReplayConfig(
        home=home_of(home) / "replay",
        drift_from=None if drift_from.lower() == "none" else drift_from,
        drift_column=drift_column,
        drift_factor=drift_factor,
        initial_months=initial_months,
        canary=canary,
    )
    from mlplatform.cli.run_view import rows_progress

    with rows_progress("replay windows") as progress:
        run_replay(cfg, progress)
