"""`mlplatform deploy` and `mlplatform canary start|status|abort|demo`: local serving and
releases on loopback (the cluster backend lives under `mlplatform cluster`)."""

import json
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from mlplatform.cli.common import HomeOpt, UsecaseOpt, fail, home_of, spec_of
from mlplatform.workspace import Workspace

canary_app = typer.Typer(
    help="Canary releases: a share of traffic to the challenger, judged round by round, "
    "then promoted (through the governance gate) or rolled back.",
    no_args_is_help=True,
)

ReleaseOpt = Annotated[
    Path | None,
    typer.Option("--release", help="Release file with the canary policy (releases/canary.yaml)."),
]


def _state_dir(home: Path, usecase: str) -> Path:
    return Workspace.locate(home, usecase).serving


def register(app: typer.Typer) -> None:
    """Add `deploy` and the `canary` group to the main app."""
    app.add_typer(canary_app, name="canary")

    @app.command()
    def deploy(
        usecase: UsecaseOpt = "taxi",
        home: HomeOpt = None,
        port: Annotated[int, typer.Option("--port", help="Router port (clients call it).")] = 8080,
        champion_alias: Annotated[str, typer.Option(help="Alias served as champion.")] = "champion",
        challenger_alias: Annotated[
            str, typer.Option(help="Alias started as the canary candidate.")
        ] = "challenger",
    ) -> None:
        """Serve the champion behind the weighted router on 127.0.0.1 (foreground; Ctrl-C stops).

        The challenger's server starts too, at 0% until `mlplatform canary start`."""
        from mlflow import MlflowClient

        from mlplatform.registry.models import version_uri
        from mlplatform.release import local_stack as ls
        from mlplatform.tracking import registered_model_name, tracking_uri

        spec, h = spec_of(usecase), home_of(home)
        tracking = tracking_uri(h)
        name = registered_model_name(spec.name)
        try:
            aliases = MlflowClient(tracking, tracking).get_registered_model(name).aliases
        except Exception:  # noqa: BLE001 - mlflow raises its own types for "not found"
            fail(f"no registered model {name} in {h}: run `make run` first")
        if champion_alias not in aliases:
            fail(
                f"{name} has no {champion_alias!r} alias (aliases: {sorted(aliases) or 'none'}); "
                "promote a version with `mlplatform promote`, or pass --champion-alias challenger"
            )
        champ_v = aliases[champion_alias]
        chall_v = aliases.get(challenger_alias, champ_v)
        uris = {
            "champion": version_uri(spec.name, champ_v),
            "challenger": version_uri(spec.name, chall_v),
        }
        procs: list[ls.Process] = []
        try:
            pair = ls.model_pair(
                spec.name, uris, tracking, _state_dir(h, usecase), procs, log=typer.echo
            )
            servers = [pair["champion"], pair["challenger"]]
            router = ls.router(servers[0].url, servers[1].url, _state_dir(h, usecase), 0, port)
            procs.append(router)
            ls.wait_ready(router, ls.READY["router"], timeout=30)
            dep = ls.Deployment(
                spec.name,
                router.url,
                servers[0].url,
                servers[1].url,
                champ_v,
                chall_v,
                tracking,
                {p.role: p.proc.pid for p in procs},
            )
            dep.save(ls.deployment_file(h, spec.name))
            typer.echo(
                f"serving {name} v{champ_v} at {router.url}/v1/models/{spec.name}:predict "
                f"(challenger v{chall_v} at 0%); `mlplatform canary start -u {usecase}` releases it"
            )
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            while all(p.alive() for p in procs):
                time.sleep(1)
            dead = [p for p in procs if not p.alive()]
            fail(f"{dead[0].role} exited:\n{dead[0].log_tail()}", 1)
        except ls.StackError as exc:
            fail(str(exc), 1)
        except KeyboardInterrupt:
            typer.echo("stopping")
        finally:
            ls.stop(*procs)
            ls.deployment_file(h, spec.name).unlink(missing_ok=True)

    @canary_app.command("start")
    def canary_start(
        usecase: UsecaseOpt = "taxi",
        home: HomeOpt = None,
        release: ReleaseOpt = None,
        percent: Annotated[int | None, typer.Option(help="Challenger share, 1-100.")] = None,
        interval: Annotated[float | None, typer.Option(help="Seconds per round.")] = None,
        shadow: Annotated[bool, typer.Option(help="Mirror traffic instead of splitting.")] = False,
        user: Annotated[str | None, typer.Option(help="Who promotes (governance).")] = None,
        prometheus: Annotated[
            str | None,
            typer.Option(
                help="Read the analysis from this Prometheus (e.g. `make monitor`'s) "
                "instead of each process's /metrics."
            ),
        ] = None,
    ) -> None:
        """Release the deployment's challenger: analysis rounds until promotion or rollback."""
        from mlplatform.release import local_stack as ls
        from mlplatform.release.canary import CanaryRefused, local_controller
        from mlplatform.release.files import ReleaseError, describe, load_policy
        from mlplatform.release.rollback_alert import rollback_alerter

        spec, h = spec_of(usecase), home_of(home)
        try:
            dep = ls.Deployment.load(ls.deployment_file(h, spec.name))
            policy = load_policy(
                release,
                challenger_percent=percent,
                interval_s=interval,
                mode="shadow" if shadow else None,
            )
        except (ls.StackError, ReleaseError) as exc:
            fail(str(exc))
        state = _state_dir(h, spec.name)
        abort_flag, status_file = state / "canary.abort", state / "canary.json"
        abort_flag.unlink(missing_ok=True)
        lines: list[str] = []

        def log(line: str) -> None:
            typer.echo(line)
            lines.append(line)
            status = {"challenger_version": dep.challenger_version, "log": lines}
            status_file.write_text(json.dumps(status, indent=2))

        controller = local_controller(
            policy,
            dep.router,
            {"champion": dep.champion, "challenger": dep.challenger},
            spec.name,
            challenger_version=dep.challenger_version,
            on_promote=lambda version: promote_version(spec, h, version, user, log),
            on_rollback=rollback_alerter(spec, h),
            log=log,
            prometheus_url=prometheus,
        )
        log(f"policy ({release or 'releases/canary.yaml'}):\n{describe(policy)}")
        try:
            controller.start()
        except CanaryRefused as exc:
            fail(str(exc), 1)
        while controller.result is None:
            log(controller.step().line())
            if abort_flag.exists():
                controller.abort(abort_flag.read_text().strip() or "aborted by the operator")
        log(f"canary {controller.result.status}: {controller.result.reason}")
        raise typer.Exit(0 if controller.result.status == "promoted" else 1)

    @canary_app.command("status")
    def canary_status(usecase: UsecaseOpt = "taxi", home: HomeOpt = None) -> None:
        """The running (or last) canary's rounds and the router's live weights."""
        from mlplatform.release import local_stack as ls
        from mlplatform.release.canary import LocalRouterBackend

        spec, h = spec_of(usecase), home_of(home)
        status_file = _state_dir(h, spec.name) / "canary.json"
        if not status_file.exists():
            fail(f"no canary has run for {spec.name} in {h}: `mlplatform canary start`")
        status = json.loads(status_file.read_text())
        typer.echo(f"challenger v{status['challenger_version']}")
        for line in status["log"]:
            typer.echo(f"  {line}")
        try:
            dep = ls.Deployment.load(ls.deployment_file(h, spec.name))
            typer.echo(f"router {dep.router}: {LocalRouterBackend(dep.router).state()}")
        except (ls.StackError, OSError) as exc:
            typer.echo(f"router: not reachable ({exc})")

    @canary_app.command("abort")
    def canary_abort(
        usecase: UsecaseOpt = "taxi",
        home: HomeOpt = None,
        reason: Annotated[str, typer.Option(help="Recorded as the rollback reason.")] = (
            "aborted by the operator"
        ),
    ) -> None:
        """Send all traffic back to the champion now; the running controller then stops."""
        from mlplatform.release import local_stack as ls
        from mlplatform.release.canary import LocalRouterBackend

        spec, h = spec_of(usecase), home_of(home)
        try:
            dep = ls.Deployment.load(ls.deployment_file(h, spec.name))
        except ls.StackError as exc:
            fail(str(exc))
        backend = LocalRouterBackend(dep.router)
        backend.set_mode("champion-only")
        backend.set_challenger_percent(0)
        (_state_dir(h, spec.name) / "canary.abort").write_text(reason)
        typer.echo(f"all traffic on the champion (v{dep.champion_version}): {reason}")

    @canary_app.command("demo")
    def canary_demo(
        usecase: UsecaseOpt = "taxi",
        home: HomeOpt = None,
        release: ReleaseOpt = None,
        rate: Annotated[float, typer.Option(help="Client requests per second.")] = 120.0,
    ) -> None:
        """`make canary`: a bad challenger rolled back, a good one promoted (after `make run`).

        Runs on loopback against a copy of the registry, so your lifecycle is untouched."""
        from mlplatform.release.demo import DemoError, run_demo
        from mlplatform.release.files import ReleaseError, load_policy
        from mlplatform.release.local_stack import StackError
        from mlplatform.workspace import REPO_ROOT

        spec, h = spec_of(usecase), home_of(home)
        try:
            policy = load_policy(release or REPO_ROOT / "releases" / "demo.yaml")
            acts = run_demo(spec, h, policy, rate, log=typer.echo)
        except (DemoError, StackError, ReleaseError) as exc:
            fail(str(exc), 1)
        expected = ["rolled_back", "promoted"]
        if [a.result.status for a in acts] != expected:
            fail(f"the demo decided {[a.result.status for a in acts]}, not {expected}", 1)


def promote_version(spec, home: Path, version: str, user: str | None, log) -> None:
    """A passed canary asks the governance gate to make `version` the champion; a refusal
    (approvals missing, battery or champion-challenger gate failed) raises and rolls back."""
    from mlplatform.governance.promotion import promote
    from mlplatform.tracking import use_workspace

    use_workspace(home, spec.name)
    result = promote(spec, version, user or "canary-controller", home, "canary analysis passed")
    log(f"{result.model} v{result.version} is now the champion (approvals {result.approvals})")
