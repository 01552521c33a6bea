"""Data commands: `spec`, `init`, `schema build`, `ingest`, `batches`, `quarantine`,
`features`. Each parses options, calls the library and prints; errors exit non-zero."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from mlplatform.cli.common import (
    EXIT_REJECTED,
    CommandGroup,
    HomeOpt,
    MasterOpt,
    UsecaseOpt,
    fail,
    home_of,
    spark_master_of,
    spec_of,
)
from mlplatform.spec import spec_json_schema
from mlplatform.workspace import PROJECT_ROOT

commands = CommandGroup()
quarantine_app = typer.Typer(help="Inspect and release quarantined batches.", no_args_is_help=True)
batches_app = typer.Typer(help="The data catalogue: every ingested batch.", no_args_is_help=True)
schema_app = typer.Typer(help="The TFDV schema derived from a use-case spec.", no_args_is_help=True)
features_app = typer.Typer(help="The Feast feature store of a use case.", no_args_is_help=True)

_fail, _spec, _home = fail, spec_of, home_of  # the names this module's commands use


def register(app: typer.Typer) -> None:
    """Add the data commands and groups to the main app."""
    commands.register(app)
    app.add_typer(quarantine_app, name="quarantine")
    app.add_typer(batches_app, name="batches")
    app.add_typer(schema_app, name="schema")
    app.add_typer(features_app, name="features")


def _gate(usecase: str, home: Path | None):
    from mlplatform.validation.quarantine import Gate
    from mlplatform.validation.schema import load_schema, schema_path
    from mlplatform.workspace import Workspace

    spec = _spec(usecase)
    try:
        schema = load_schema(schema_path(PROJECT_ROOT, spec.name))
    except FileNotFoundError as exc:
        _fail(str(exc))
    return Gate(spec, schema, Workspace.for_usecase(_home(home), spec.name))


@commands.command()
def spec(
    usecase: UsecaseOpt = "taxi",
    schema: Annotated[
        bool, typer.Option("--schema", help="Print the JSON schema of use-case files and exit.")
    ] = False,
) -> None:
    """Check a use-case YAML (errors name the key and line), or print the spec's JSON schema."""
    if schema:
        typer.echo(json.dumps(spec_json_schema(), indent=2))
        return
    s = _spec(usecase)
    feats = ", ".join(c.name for c in s.feature_columns)
    typer.echo(f"{s.name}: valid (spec hash {s.spec_hash()})")
    typer.echo(f"  label: {s.label}; entity: {s.entity.name} ({s.entity.key})")
    typer.echo(f"  features ({len(s.feature_columns)}): {feats}")
    excluded = [f"{c.name} ({c.reason})" for c in s.columns if c.role.value == "excluded"]
    if excluded:
        typer.echo(f"  excluded: {'; '.join(excluded)}")


@commands.command()
def init(
    name: Annotated[str, typer.Argument(help="Use-case name: lower case, digits, underscores.")],
    data: Annotated[Path, typer.Option("--from", help="A CSV or parquet file of the data.")],
    label: Annotated[str, typer.Option("--label", help="The column to predict.")],
    positive: Annotated[
        str | None,
        typer.Option(
            "--positive",
            help="The label value that means 1 (e.g. '>50K', 'bad'); not needed for 0/1 or "
            "true/false labels. Every other value means 0.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing usecases/<name>.yaml.")
    ] = False,
) -> None:
    """Draft usecases/<name>.yaml from a data file: types, ranges, categories, nulls, event
    time, entity key, slices, with comments on what was inferred and what to review. The
    draft is validated, its TFDV schema written, and the next command printed."""
    import re

    from mlplatform.spec import SpecError, load_spec
    from mlplatform.spec_draft import DraftError, draft_spec, render
    from mlplatform.validation.schema import build_schema, schema_path, schema_text

    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        _fail(f"use-case name {name!r}: lower case letters, digits and underscores, starting "
              "with a letter (e.g. adult_income)")
    out = PROJECT_ROOT / "usecases" / f"{name}.yaml"
    if out.exists() and not force:
        _fail(f"{out} exists: edit it, or pass --force to draft it again from the data")
    data = data.resolve()
    if not data.exists():
        _fail(f"{data}: no such file")
    try:
        source = str(data.relative_to(PROJECT_ROOT))
    except ValueError:
        source = str(data)
    typer.echo(f"reading {data} ...")
    try:
        draft = draft_spec(name, data, label, positive, source)
    except DraftError as exc:
        _fail(str(exc))
    text = render(draft)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".yaml.draft")
    tmp.write_text(text)
    try:
        spec = load_spec(tmp)
    except SpecError as exc:  # a draft that does not validate is a bug here, not the user's
        _fail(f"the drafted spec does not validate (kept at {tmp}; please report):\n{exc}")
    tmp.replace(out)
    schema = schema_path(PROJECT_ROOT, spec.name)
    schema.parent.mkdir(parents=True, exist_ok=True)
    schema.write_text(schema_text(build_schema(spec)))
    features = len(spec.feature_columns)
    typer.echo(f"wrote {out} ({len(spec.columns)} columns: {features} features, label "
               f"{spec.label!r}{f' (1 = {positive!r})' if spec.label_spec.positive else ''})")
    for note in draft.notes:
        typer.echo(f"  {note}")
    if draft.protected_hints:
        typer.echo(f"  review: {', '.join(draft.protected_hints)} may be protected attributes "
                   "(slices.protected gates fairness on them)")
    typer.echo(f"wrote {schema}")
    typer.echo(f"next: make run USECASE={spec.name}")


@schema_app.command("build")
def schema_build(
    usecase: UsecaseOpt = "taxi",
    check: Annotated[
        bool, typer.Option("--check", help="Only report whether the checked-in file is current.")
    ] = False,
) -> None:
    """Write schemas/<name>.pbtxt from the spec (or, with --check, verify it is up to date)."""
    from mlplatform.validation.schema import build_schema, schema_diff, schema_path, schema_text

    s = _spec(usecase)
    path = schema_path(PROJECT_ROOT, s.name)
    text = schema_text(build_schema(s))
    if check:
        diff = schema_diff(s, PROJECT_ROOT)
        if diff:
            typer.echo(diff)
            _fail(
                f"{path} is out of date with usecases/{s.name}.yaml (diff above): accept it "
                f"with `mlplatform schema build -u {s.name}` or `make schemas`",
                1,
            )
        typer.echo(f"{path}: up to date")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    typer.echo(f"wrote {path}")


@commands.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="CSV or parquet batch files, in order.")],
    usecase: UsecaseOpt = "taxi",
    home: HomeOpt = None,
) -> None:
    """Ingest batches through the validation gate: version, validate, accept or quarantine.

    Exits 3 if any batch was quarantined (its report says what to do)."""
    gate = _gate(usecase, home)
    rejected = 0
    for f in files:
        try:
            out = gate.process(f)
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        rec = out.record
        note = "" if out.report is not None else " (seen before: unchanged)"
        typer.echo(f"{rec.short_id} {rec.status.value:<11} {rec.rows:>9} rows  {f}{note}")
        if not out.accepted:
            rejected += 1
            qdir = gate.ws.quarantine / rec.batch_id
            if (qdir / "anomalies.txt").exists():
                typer.echo((qdir / "anomalies.txt").read_text(), err=True)
            else:
                typer.echo(
                    f"{rec.short_id} is {rec.status.value} ({rec.status_reason}); "
                    f"`mlplatform batches restore {rec.short_id} --reason ...` brings it back",
                    err=True,
                )
    if rejected:
        _fail(f"{rejected} batch(es) quarantined; see `mlplatform quarantine list`", EXIT_REJECTED)


@batches_app.command("list")
def batches_list(usecase: UsecaseOpt = "taxi", home: HomeOpt = None) -> None:
    """Every data version of the use case, oldest first."""
    from mlplatform.data.catalogue import Catalogue
    from mlplatform.workspace import Workspace

    s = _spec(usecase)
    ws = Workspace.for_usecase(_home(home), s.name)
    rows = Catalogue(ws.catalogue).list(s.name)
    if not rows:
        typer.echo(f"no batches yet for {s.name}; ingest one with `mlplatform ingest FILE`")
    for r in rows:
        typer.echo(
            f"{r.short_id}  {r.status.value:<11} {r.rows:>9} rows  {r.ingested_at}  {r.source}"
        )


def _batch_action(action: str, batch_id: str, reason: str, usecase: str, home) -> None:
    from mlplatform.data.catalogue import Catalogue
    from mlplatform.workspace import Workspace

    s = _spec(usecase)
    cat = Catalogue(Workspace.for_usecase(_home(home), s.name).catalogue)
    try:
        rec = getattr(cat, action)(batch_id, reason)
    except (KeyError, ValueError) as exc:
        _fail(str(exc.args[0]))
    typer.echo(f"{rec.short_id} {rec.status.value}: {rec.status_reason}")


BatchArg = Annotated[str, typer.Argument(help="Batch id or unique prefix.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the history).")]


@batches_app.command("retire")
def batches_retire(
    batch_id: BatchArg, reason: ReasonOpt, usecase: UsecaseOpt = "taxi", home: HomeOpt = None
) -> None:
    """Take a batch out of use: no feature build, training set or drift reference reads it.
    Its bytes stay on disk and the step is recorded; `batches restore` undoes it."""
    _batch_action("retire", batch_id, reason, usecase, home)


@batches_app.command("restore")
def batches_restore(
    batch_id: BatchArg, reason: ReasonOpt, usecase: UsecaseOpt = "taxi", home: HomeOpt = None
) -> None:
    """Give a retired batch back the status it had before `batches retire`."""
    _batch_action("restore", batch_id, reason, usecase, home)


@quarantine_app.command("list")
def quarantine_list(usecase: UsecaseOpt = "taxi", home: HomeOpt = None) -> None:
    """Quarantined batches and why."""
    gate = _gate(usecase, home)
    rows = gate.quarantined()
    if not rows:
        typer.echo("no quarantined batches")
    for r in rows:
        typer.echo(f"{r.short_id}  {r.rows:>9} rows  {r.ingested_at}  {r.source}")
        typer.echo(f"    {r.status_reason[:300]}")


@quarantine_app.command("show")
def quarantine_show(
    batch_id: Annotated[str, typer.Argument(help="Batch id or unique prefix.")],
    usecase: UsecaseOpt = "taxi",
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The JSON report.")] = False,
) -> None:
    """The anomaly report of a quarantined batch, and where its bytes are kept."""
    gate = _gate(usecase, home)
    try:
        report = gate.report_of(batch_id)
    except KeyError as exc:
        _fail(str(exc.args[0]))
    rec = gate.cat.get(batch_id)
    if as_json:
        typer.echo(report.to_json())
        return
    typer.echo(report.to_text())
    from mlplatform.validation.distribution import PLOT_FILE, read_shares

    qdir = gate.ws.quarantine / rec.batch_id
    for name, table in read_shares(qdir).items():
        typer.echo(f"{name}: share of rows per bin, reference vs batch")
        for b, r, x in zip(table["bin"], table["reference"], table["batch"], strict=True):
            typer.echo(f"  {b:>28}  {r:7.2%}  {x:7.2%}")
    if (qdir / PLOT_FILE).exists():
        typer.echo(f"histograms: {qdir / PLOT_FILE}")
    typer.echo(f"status: {rec.status.value}; bytes kept at {qdir}")
    for e in gate.cat.events(rec.batch_id):
        typer.echo(f"  {e['at']}  {e['event']}  {e['detail'][:120]}")


@quarantine_app.command("release")
def quarantine_release(
    batch_id: Annotated[str, typer.Argument(help="Batch id or unique prefix.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it may be released (recorded).")],
    replacement: Annotated[
        Path | None,
        typer.Option("--replacement", help="A corrected file that replaces the batch."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Accept despite outstanding anomalies (recorded).")
    ] = False,
    usecase: UsecaseOpt = "taxi",
    home: HomeOpt = None,
) -> None:
    """Release a batch after a fix: re-validated against the current schema (after a spec fix),
    replaced by a corrected file (--replacement), or forced with a recorded reason."""
    from mlplatform.validation.quarantine import BatchRejected

    gate = _gate(usecase, home)
    try:
        out = gate.release(batch_id, reason, replacement=replacement, force=force)
    except BatchRejected as exc:
        _fail(f"still failing, not released:\n{exc}", EXIT_REJECTED)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc.args[0]) if exc.args else str(exc))
    typer.echo(f"{out.record.short_id} {out.record.status.value} ({out.record.rows} rows)")
    if not out.accepted:
        _fail("the replacement was quarantined too; see `mlplatform quarantine list`", 3)


@features_app.command("build")
def features_build(
    usecase: UsecaseOpt = "taxi",
    home: HomeOpt = None,
    training_set: Annotated[
        Path | None, typer.Option("--training-set", help="Also write the training set here.")
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Where the offline tables are computed. local: pandas in this process. "
            "spark: a Spark cluster (--master), for sources too large for one process; the "
            "same files and rows, and Feast apply, materialize and --training-set run here "
            "as with local.",
        ),
    ] = "local",
    master: MasterOpt = None,
) -> None:
    """Rebuild Feast tables from accepted batches, apply definitions, materialize online.

    With --engine spark --master URL the offline tables are computed on a Spark cluster."""
    from mlplatform.features.store import NoAcceptedData
    from mlplatform.jobs.data import features_job
    from mlplatform.spark.cluster import ClusterError

    spark_master = spark_master_of(engine, master)
    started = time.monotonic()

    def step(name: str) -> None:
        typer.echo(f"[{time.monotonic() - started:6.1f} s] {name}", err=True)

    try:
        build = features_job(
            _spec(usecase).name, _home(home), training_set, step, spark_master=spark_master
        )
    except (NoAcceptedData, ClusterError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(build.to_dict(), indent=2))


@features_app.command("online")
def features_online(
    keys: Annotated[str, typer.Argument(help='Entity keys as JSON, e.g. \'{"company": "X"}\'')],
    usecase: UsecaseOpt = "taxi",
    home: HomeOpt = None,
) -> None:
    """Look up online features for one entity row."""
    from mlplatform.features.store import FeatureRepo
    from mlplatform.workspace import Workspace

    try:
        row = json.loads(keys)
    except json.JSONDecodeError as exc:
        _fail(f"keys must be a JSON object: {exc}")
    if not isinstance(row, dict):
        _fail("keys must be a JSON object of join key to value")
    s = _spec(usecase)
    repo = FeatureRepo(s, Workspace.for_usecase(_home(home), s.name))
    typer.echo(json.dumps(repo.online([row]), indent=2, default=str))


