"""`mlplatform cluster ...`: images, a kind cluster with KFP + KServe, submit, deploy, canary
(registered by mlplatform.cli). Every command checks the tools it drives first and says what
to install; the logic lives in mlplatform.cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mlplatform.cli.common import HomeOpt, home_of

cluster_app = typer.Typer(
    help="Kubeflow on kind: images, cluster, submit pipelines, deploy models.",
    no_args_is_help=True,
)

PIPELINES = ("training", "batch_scoring", "monitoring")
HostOpt = Annotated[
    str,
    typer.Option(
        "--host",
        help="KFP UI/API address (`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`).",
    ),
]
ContextOpt = Annotated[
    str | None, typer.Option("--context", help="kubectl context (default: kind-mlplatform).")
]


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _guard(fn, *args, **kwargs):
    """Run a cluster step; a missing tool or a refused step becomes a one-line error."""
    from mlplatform.cluster.tools import ToolMissing

    try:
        return fn(*args, **kwargs)
    except ToolMissing as exc:
        _fail(str(exc), 3)
    except (RuntimeError, ValueError, LookupError) as exc:
        _fail(str(exc))


def _repo() -> Path:
    from mlplatform.workspace import REPO_ROOT

    return REPO_ROOT


def _compiled(pipeline: str) -> Path:
    """The compiled YAML of `pipeline`, or a usage error saying how to make it."""
    package = _repo() / "pipelines" / "compiled" / f"{pipeline}.yaml"
    if not package.exists():
        _fail(f"{package} is missing: run `make compile`")
    return package


def _spec(usecase: str):
    """The use case's spec (a name under usecases/ or a path), or a usage error."""
    from mlplatform.spec import SpecError, load_spec, resolve_usecase

    try:
        return load_spec(resolve_usecase(usecase, _repo()))
    except SpecError as exc:
        _fail(str(exc))


def _context(context: str | None) -> str:
    from mlplatform.cluster.kind import CLUSTER_NAME

    return context or f"kind-{CLUSTER_NAME}"


@cluster_app.command("tools")
def tools() -> None:
    """Say which of docker, kind and kubectl are installed (and how to get the others)."""
    from mlplatform.cluster.tools import INSTALL_HINTS, ToolMissing, require

    missing = 0
    for tool in INSTALL_HINTS:
        try:
            typer.echo(f"{tool}: {require(tool)[tool]}")
        except ToolMissing as exc:
            missing += 1
            typer.echo(str(exc))
    raise typer.Exit(3 if missing else 0)


@cluster_app.command("images")
def build_images(
    load: Annotated[bool, typer.Option("--load", help="Also `kind load docker-image`.")] = False,
    only: Annotated[
        str | None, typer.Option("--only", help="Build one image: component or serving.")
    ] = None,
) -> None:
    """Build the component and serving images with docker, else podman (MLPLATFORM_*_IMAGE
    name them; MLPLATFORM_BASE_IMAGE overrides the base: a pinned python tag for docker, the
    offline Debian base `make base-image` builds for podman)."""
    from mlplatform.cluster import images
    from mlplatform.cluster.kind import CLUSTER_NAME

    which = (only,) if only else ("component", "serving")
    for built in _guard(images.build, _repo(), which):
        typer.echo(f"built {built.name}: {built.seconds} s, {built.size_mb} MB")
    if load:
        _guard(images.load_into_kind, CLUSTER_NAME)


@cluster_app.command("up")
def up(
    build: Annotated[bool, typer.Option("--build/--no-build", help="Build images first.")] = True,
) -> None:
    """Create the kind cluster; install KFP, cert-manager, Knative, KServe and the manifests."""
    from mlplatform.cluster import kind

    shared = Path(os.environ.get("MLPLATFORM_SHARED_DATA", _repo().parent / "shared" / "data"))
    _guard(kind.up, _repo(), shared, build_images=build)
    typer.echo(
        "cluster ready. KFP UI: kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80, "
        "then http://127.0.0.1:8080"
    )


@cluster_app.command("down")
def down() -> None:
    """Delete the kind cluster (the host folder .mlplatform/kind stays)."""
    from mlplatform.cluster import kind

    _guard(kind.down)


@cluster_app.command("submit")
def submit(
    usecase: Annotated[str, typer.Option("--usecase", "-u", help="Use-case name.")] = "taxi",
    pipeline: Annotated[
        str, typer.Option("--pipeline", help="training|batch_scoring|monitoring")
    ] = "training",
    source: Annotated[
        str | None, typer.Option("--source", help="Input file as the pods see it (/data/...).")
    ] = None,
    host: HostOpt = "http://127.0.0.1:8080",
) -> None:
    """Upload the compiled pipeline, start a run, print its link in the KFP UI."""
    from mlplatform.cluster.submit import cluster_source
    from mlplatform.cluster.submit import submit as do_submit

    if pipeline not in PIPELINES:
        _fail(f"--pipeline {pipeline!r}: expected one of {', '.join(PIPELINES)}")
    package, spec = _compiled(pipeline), _spec(usecase)
    params = {"usecase": spec.name, "home": "/data/mlplatform"}
    if pipeline != "monitoring":  # the monitoring pipeline reads the request log, not a file
        params["source"] = source or _guard(cluster_source, spec.source.path)
    name = f"mlplatform-{pipeline.replace('_', '-')}"
    try:
        done = do_submit(package, name, params, host=host)
    except Exception as exc:  # the KFP API is an external system: say where it failed
        _fail(f"cannot submit to Kubeflow Pipelines at {host}: {exc}")
    typer.echo(f"pipeline {name} version {done.version_name} ({done.version_id})")
    typer.echo(f"run {done.run_id}: {done.url}")


@cluster_app.command("schedule")
def schedule(
    usecase: Annotated[str, typer.Option("--usecase", "-u", help="Use-case name.")] = "taxi",
    cron: Annotated[
        str,
        typer.Option(
            "--cron",
            help="KFP cron, six fields with seconds first: '0 0 * * * *' is hourly, "
            "'0 0 6 * * *' daily at 06:00.",
        ),
    ] = "0 0 * * * *",
    families: Annotated[
        str, typer.Option("--families", help="Families a retraining trains.")
    ] = "logistic,xgboost,keras",
    host: HostOpt = "http://127.0.0.1:8080",
) -> None:
    """Schedule the monitoring pipeline as a KFP recurring run (one run at a time, no catch-up)."""
    from mlplatform.cluster.submit import check_cron
    from mlplatform.cluster.submit import schedule as do_schedule
    from mlplatform.jobs.monitoring import parse_families

    _guard(check_cron, cron)
    _guard(parse_families, families)
    package, spec = _compiled("monitoring"), _spec(usecase)
    params = {"usecase": spec.name, "home": "/data/mlplatform", "families": families}
    try:
        done = do_schedule(package, "mlplatform-monitoring", params, cron, host=host)
    except Exception as exc:  # the KFP API is an external system: say where it failed
        _fail(f"cannot schedule on Kubeflow Pipelines at {host}: {exc}")
    typer.echo(f"recurring run {done.recurring_run_id} ({done.cron}), {done.version_name}")
    typer.echo(done.url)


@cluster_app.command("deploy")
def deploy(
    usecase: Annotated[str, typer.Option("--usecase", "-u", help="Use-case name.")] = "taxi",
    alias: Annotated[str, typer.Option("--alias", help="Registry alias.")] = "champion",
    canary_percent: Annotated[
        int | None,
        typer.Option("--canary-percent", help="Roll the alias out as a canary with this share."),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            help="The cluster's MLflow (default $MLPLATFORM_TRACKING_URI or http://127.0.0.1:5000"
            " after `kubectl port-forward -n mlplatform svc/mlflow 5000`).",
        ),
    ] = None,
    context: ContextOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print, do not apply.")] = False,
) -> None:
    """Serve a registry alias with KServe (InferenceService from manifests/base/serving)."""
    from mlplatform.cluster import deploy as d
    from mlplatform.cluster.manifests import to_yaml

    uri = tracking_uri or os.environ.get("MLPLATFORM_TRACKING_URI") or "http://127.0.0.1:5000"
    try:
        resolved = d.resolve(usecase, alias, uri)
    except ValueError as exc:
        _fail(str(exc))
    except Exception as exc:  # MLflow server unreachable, alias missing
        _fail(f"cannot resolve {usecase}@{alias} in the registry at {uri}: {exc}")
    isvc = _guard(d.render, _repo(), usecase, resolved, canary_percent)
    if dry_run:
        typer.echo(to_yaml([isvc]), nl=False)
        return
    _guard(d.apply, isvc, _context(context))
    share = f"{canary_percent}% canary" if canary_percent is not None else "all traffic"
    typer.echo(f"{resolved.model} v{resolved.version} ({alias}) -> {resolved.storage_uri}, {share}")


@cluster_app.command("canary")
def canary(
    percent: Annotated[int, typer.Argument(help="Challenger share 0..100 (0 = roll back).")],
    usecase: Annotated[str, typer.Option("--usecase", "-u", help="Use-case name.")] = "taxi",
    reason: Annotated[
        str, typer.Option(help="Why (0 only): carried by the canary_rolled_back alert.")
    ] = "rolled back by the operator",
    context: ContextOpt = None,
    home: HomeOpt = None,
) -> None:
    """Set canaryTrafficPercent of the use case's InferenceService (manual promote/rollback);
    0 also raises the platform's canary_rolled_back alert through the spec's sink."""
    from mlplatform.cluster.layout import NAMESPACE
    from mlplatform.release.kserve_backend import KServeBackend
    from mlplatform.release.rollback_alert import raise_rollback_alert

    spec = _spec(usecase)
    backend = _guard(KServeBackend.from_kubeconfig, spec.name, NAMESPACE, context=_context(context))
    version = _guard(backend.state)["version"] if percent == 0 else None
    _guard(backend.set_challenger_percent, percent)
    typer.echo(f"{NAMESPACE}/{spec.name}: canaryTrafficPercent={percent}")
    if percent == 0:
        raise_rollback_alert(spec, home_of(home), version or "unknown", reason)
        typer.echo(f"alert canary_rolled_back raised for v{version or 'unknown'}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(cluster_app, name="cluster")
