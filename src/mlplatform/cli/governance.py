"""`mlplatform` commands for governance (registered by mlplatform.cli): approve, promote,
rollback, stages, audit verify/show, lineage (with --reproduce) and card.

Refusals exit 1 with every reason; unknown models or versions exit 2."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mlplatform.cli.common import HomeOpt, fail, home_of, spec_of
from mlplatform.governance.reproduction import DEFAULT_TOLERANCE

EXIT_REFUSED = 1

audit_app = typer.Typer(
    help="The hash-chained audit trail of governance actions.", no_args_is_help=True
)


class RoleOpt(StrEnum):
    tech_lead = "tech-lead"
    business_owner = "business-owner"


ModelArg = Annotated[
    str, typer.Argument(help="Use case (`taxi`), its registered model (`taxi-classifier`) or YAML.")
]
VersionArg = Annotated[str, typer.Argument(help="Registry version number.")]
UserOpt = Annotated[
    str | None,
    typer.Option("--user", help="Who acts (default: $MLPLATFORM_USER, else the OS user)."),
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why, kept in the audit trail.")]


def _open(model: str, home: Path | None):
    """The use case's spec and home, with MLflow pointed at its registry."""
    from mlplatform.tracking import use_workspace

    name = model.removesuffix("-classifier") if not model.endswith((".yaml", ".yml")) else model
    spec = spec_of(name)
    home_dir = home_of(home).resolve()
    use_workspace(home_dir, spec.name)
    return spec, home_dir


def _refused(exc: Exception) -> None:
    """Print a refusal with every reason it gives, and exit 1."""
    reasons = getattr(exc, "reasons", None)
    if reasons is None:
        typer.secho(f"refused: {exc}", fg=typer.colors.RED, err=True)
    else:
        target = f"{exc.model} v{exc.version}" if exc.version else exc.model
        typer.secho(f"refused: {exc.action} of {target}", fg=typer.colors.RED, err=True)
        for r in reasons:
            typer.secho(f"  - {r}", err=True)
    raise typer.Exit(EXIT_REFUSED)


def approve(
    model: ModelArg,
    version: VersionArg,
    role: Annotated[RoleOpt, typer.Option("--role", help="The role you approve in.")],
    user: UserOpt = None,
    home: HomeOpt = None,
    accept_fairness: Annotated[
        str | None,
        typer.Option(
            "--accept-fairness",
            help="Business owner only: accept an INCONCLUSIVE fairness verdict, with the "
            "reason (kept in the audit trail, stage history and model card).",
        ),
    ] = None,
) -> None:
    """Approve the candidate version in one role (two different people must approve)."""
    from mlplatform.governance.approvals import approve as do_approve
    from mlplatform.governance.approvals import resolve_user
    from mlplatform.registry.models import PromotionRefused

    spec, home_dir = _open(model, home)
    who = resolve_user(user)
    try:
        rec = do_approve(spec, version, role.value, who, home_dir, accept_fairness)
    except PromotionRefused as exc:
        _refused(exc)
    typer.echo(f"{who} approved {rec['model']} v{version} as {role.value} (audit #{rec['seq']})")
    if accept_fairness:
        typer.echo(f"  and accepted its INCONCLUSIVE fairness: {accept_fairness}")


def promote(
    model: ModelArg,
    version: VersionArg,
    user: UserOpt = None,
    reason: ReasonOpt = "",
    home: HomeOpt = None,
) -> None:
    """Move a version to Production (`champion`): needs both approvals, battery and gate."""
    from mlplatform.governance.approvals import resolve_user
    from mlplatform.governance.promotion import promote as do_promote
    from mlplatform.registry.models import PromotionRefused

    spec, home_dir = _open(model, home)
    try:
        res = do_promote(spec, version, resolve_user(user), home_dir, reason)
    except PromotionRefused as exc:
        _refused(exc)
    approvers = ", ".join(f"{u} ({r})" for r, u in res.approvals.items())
    was = f"; v{res.previous} archived" if res.previous else ""
    typer.echo(f"{res.model} v{res.version} is in Production{was}. Approved by {approvers}.")
    typer.echo(f"  gate: {res.gate}  (audit #{res.audit_seq})")


def rollback(
    model: ModelArg,
    user: UserOpt = None,
    reason: ReasonOpt = "",
    home: HomeOpt = None,
) -> None:
    """Give Production back to the previous production version, in one command."""
    from mlplatform.governance.approvals import resolve_user
    from mlplatform.governance.promotion import rollback as do_rollback
    from mlplatform.registry.models import PromotionRefused

    spec, home_dir = _open(model, home)
    try:
        res = do_rollback(spec, resolve_user(user), home_dir, reason)
    except PromotionRefused as exc:
        _refused(exc)
    typer.echo(
        f"{res.model}: rolled back from v{res.rolled_back} (archived) to v{res.version} "
        f"(Production again)  (audit #{res.audit_seq})"
    )


def stages(model: ModelArg, home: HomeOpt = None) -> None:
    """Each version's stage now, and the stage history (which version held which stage when)."""
    from mlflow import MlflowClient

    from mlplatform.governance import stages as st
    from mlplatform.tracking import registered_model_name

    spec, _ = _open(model, home)
    name = registered_model_name(spec.name)
    versions = MlflowClient().search_model_versions(f"name='{name}'")
    if not versions:
        fail(f"{name} has no versions yet")
    for v in sorted(versions, key=lambda v: int(v.version)):
        typer.echo(f"v{v.version:<4} {st.stage_of(spec, v.version)}")
    typer.echo("history:")
    for e in st.history(spec):
        typer.echo(f"  {e.line()}")


def _model_of(t) -> str | None:
    """The registered model a trail is about, from its first readable record."""
    for line in t.path.read_text().splitlines():
        try:
            return json.loads(line).get("model")
        except (json.JSONDecodeError, AttributeError):
            continue
    return None


@audit_app.command("verify")
def audit_verify(
    usecase: Annotated[
        str | None, typer.Option("--usecase", "-u", help="One use case (default: every trail).")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Check every record's hash and link (and the registry anchor); names any bad line."""
    import os

    import mlflow

    from mlplatform.governance.audit import AuditTrail
    from mlplatform.governance.records import anchor
    from mlplatform.tracking import tracking_uri

    home_dir = home_of(home).resolve()
    # The registry holds each trail's anchor; no experiment is needed to read it.
    uri = os.environ.get("MLPLATFORM_TRACKING_URI") or tracking_uri(home_dir)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    root = home_dir / "governance"
    names = [usecase] if usecase else sorted(p.name for p in root.glob("*") if p.is_dir())
    if not names:
        fail(f"no audit trail under {root}")
    bad = False
    for name in names:
        t = AuditTrail(root / name / "audit.jsonl")
        if not t.path.exists():
            fail(f"{t.path}: no audit trail for {name}")
        head = anchor(_model_of(t) or f"{name}-classifier")
        result = t.verify(head)
        if result.ok:
            anchored = "anchored in the registry" if head else "no registry anchor"
            typer.echo(f"{t.path}: {result.records} records, chain intact, {anchored}")
            continue
        bad = True
        typer.secho(f"{t.path}: TAMPERED", fg=typer.colors.RED, err=True)
        for p in result.problems:
            typer.secho(f"  {p}", err=True)
    if bad:
        raise typer.Exit(EXIT_REFUSED)


@audit_app.command("show")
def audit_show(model: ModelArg, home: HomeOpt = None) -> None:
    """Print the trail's records, oldest first."""
    from mlplatform.governance.records import trail

    spec, home_dir = _open(model, home)
    for r in trail(spec, home_dir).records():
        extra = {
            k: v
            for k, v in r.items()
            if k not in ("seq", "at", "event", "actor", "model", "prev", "hash")
        }
        typer.echo(f"#{r['seq']:<4} {r['at']} {r['event']:<9} {r['actor']:<12} {json.dumps(extra)}")


def lineage(
    model: ModelArg,
    version: VersionArg,
    reproduce: Annotated[
        bool, typer.Option("--reproduce", help="Retrain from the lineage and compare metrics.")
    ] = False,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Allowed absolute AUC difference.")
    ] = DEFAULT_TOLERANCE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    home: HomeOpt = None,
) -> None:
    """Lineage of a version; --reproduce retrains it and compares (exit 1 on mismatch).

    Shows code commit, spec hash, data versions, feature views, params, metrics, battery
    results, approvals and stage history."""
    from mlplatform.governance import lineage as lin
    from mlplatform.governance.reproduction import ReproductionError
    from mlplatform.jobs.models import reproduce_job

    spec, home_dir = _open(model, home)
    try:
        info = lin.lineage(spec, version, home_dir)
    except KeyError as exc:
        fail(str(exc).strip("'\""))
    typer.echo(info.to_json() if as_json else info.to_text())
    if not reproduce:
        return
    try:
        result = reproduce_job(spec.name, version, home_dir, tolerance)
    except ReproductionError as exc:
        fail(f"cannot reproduce v{version}: {exc}")
    typer.echo(result.to_text())
    if not result.ok:
        raise typer.Exit(EXIT_REFUSED)


def card(
    model: ModelArg,
    version: VersionArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also write <usecase>-v<version>.md/.html here "
            "(docs/model-cards for the checked-in copy).",
        ),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Generate the version's model card (logged to its run); print the markdown."""
    from mlplatform.governance.cards import publish_card
    from mlplatform.governance.lineage import lineage as get_lineage

    spec, home_dir = _open(model, home)
    try:
        get_lineage(spec, version, home_dir)
    except KeyError as exc:
        fail(str(exc).strip("'\""))
    where = publish_card(spec, version, home_dir, out)
    typer.echo(where.pop("text"))
    for k, v in where.items():
        typer.secho(f"{k}: {v}", err=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    for fn in (approve, promote, rollback, stages, lineage, card):
        app.command()(fn)
    app.add_typer(audit_app, name="audit")
