"""Jobs: the units a pipeline step or a CLI command runs, one use case at a time.

Each job resolves the spec and workspace, calls the library, and returns plain values or a
small frozen dataclass, so KFP components and the CLI stay a few lines long.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mlplatform.spec import UseCase, load_usecase
from mlplatform.workspace import PROJECT_ROOT, Workspace

log = logging.getLogger(__name__)


def gate_for(usecase: str, home: Path):
    from mlplatform.validation.quarantine import Gate
    from mlplatform.validation.schema import load_schema, schema_path

    spec = load_usecase(usecase)
    schema = load_schema(schema_path(PROJECT_ROOT, spec.name))
    return Gate(spec, schema, Workspace.for_usecase(home, spec.name))


def source_path(spec: UseCase, source: str | Path | None) -> Path:
    """The batch to ingest: the given file, else the spec's source (relative to the repo)."""
    if source:
        return Path(source).resolve()
    return (PROJECT_ROOT / spec.source.path).resolve()


def ingest_job(usecase: str, source: Path | None, home: Path) -> str:
    """Record the batch as a data version; returns its id (the same bytes give the same id)."""
    from mlplatform.data.ingest import ingest

    gate = gate_for(usecase, home)
    path = source_path(gate.spec, source)
    rec, created = ingest(path, gate.spec, gate.ws, gate.schema_version)
    log.info(
        "%s batch %s (%d rows) from %s", "new" if created else "known", rec.short_id, rec.rows, path
    )
    return rec.batch_id


def validate_job(
    usecase: str,
    batch_id: str,
    home: Path,
    report_path: Path | None = None,
    view_path: Path | None = None,
) -> str:
    """Accept the batch or stop: a quarantined batch raises BatchRejected with what to do.
    `report_path` receives the anomaly report (JSON), `view_path` the HTML view of the
    verdict and the batch's TFDV statistics."""
    from mlplatform.validation.quarantine import STATS_FILE, BatchRejected

    gate = gate_for(usecase, home)
    out = gate.judge(batch_id)
    report = out.report or _stored_report(gate, out.record.batch_id)
    if report_path is not None and report is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(report.to_json())
    if view_path is not None:
        from mlplatform.validation.views import batch_view_html

        bid = out.record.batch_id
        kept = gate.ws.quarantine / bid if not out.accepted else gate.ws.batch_dir(bid)
        view_path.parent.mkdir(parents=True, exist_ok=True)
        view_path.write_text(
            batch_view_html(report, kept / STATS_FILE, f"{gate.spec.name} batch {bid[:12]}")
        )
    if not out.accepted:
        raise BatchRejected(report, gate.ws.quarantine / out.record.batch_id)
    log.info("batch %s accepted (%d rows)", out.record.short_id, out.accepted_rows)
    return out.record.batch_id


def _stored_report(gate, batch_id: str):
    try:
        return gate.report_of(batch_id)
    except KeyError:
        return None  # accepted earlier: no anomaly report exists


@dataclass(frozen=True)
class FeatureBuild:
    """A features build: the Feast tables from the accepted batches, the objects applied, the
    stores written, and the training set when one was exported."""

    usecase: str
    batches: list[str]  # the accepted batch ids the tables were built from
    rows: int
    tables: dict[str, int]  # view name -> rows written
    feast_objects: list[str]  # what `feast apply` registered
    registry: str  # the Feast registry's path
    online_store: str | None  # its path (SQLite) or connection string (Redis)
    training_set: str | None = None  # the exported training set, None when not asked for
    training_rows: int | None = None
    label_rate: float | None = None

    def to_dict(self) -> dict:
        """As last_build.json and the pipeline's training-set artifact hold it: the training
        set's keys only when one was exported."""
        out = asdict(self)
        if self.training_set is None:
            for key in ("training_set", "training_rows", "label_rate"):
                del out[key]
        return out


def features_job(
    usecase: str,
    home: Path,
    training_set_path: Path | None = None,
    on_step: Callable[[str], None] | None = None,
    spark_master: str | None = None,
) -> FeatureBuild:
    """Build the Feast tables from accepted batches, apply, materialize, export the training set.
    `on_step(name)` is called as each step starts (a caller's progress); the outcome is also
    written to feast/last_build.json."""
    from mlplatform.features.store import FeatureRepo

    step = on_step or (lambda _name: None)
    spec = load_usecase(usecase)
    ws = Workspace.for_usecase(home, spec.name)
    repo = FeatureRepo(spec, ws)
    if spark_master:
        # The same offline tables computed on a Spark cluster, for sources too large for this
        # process (mlplatform.spark.features); apply, materialize and training set unchanged.
        from mlplatform.spark.features import build_tables_on

        step(f"building the offline tables from accepted batches on Spark at {spark_master}")
        built = build_tables_on(spark_master, spec, ws, step)
    else:
        step("building the offline tables from accepted batches")
        built = repo.build_tables()
    step("applying the feature definitions (feast apply)")
    names = repo.apply()
    step("materializing the online store")
    repo.materialize()
    config = repo.config_dict()
    outcome = FeatureBuild(
        usecase=spec.name,
        batches=list(built.batches),
        rows=built.rows,
        tables=built.tables,
        feast_objects=names,
        registry=config["registry"]["path"],
        online_store=config["online_store"].get("path")
        or config["online_store"].get("connection_string"),
    )
    if training_set_path is not None:
        step("retrieving the training set (point-in-time join)")
        ts = repo.training_set()
        training_set_path.parent.mkdir(parents=True, exist_ok=True)
        ts.to_parquet(training_set_path, index=False)
        outcome = replace(
            outcome,
            training_set=str(training_set_path),
            training_rows=len(ts),
            label_rate=round(float(ts[spec.label].mean()), 4),
        )
    (ws.feast / "last_build.json").write_text(json.dumps(outcome.to_dict(), indent=2))
    return outcome
