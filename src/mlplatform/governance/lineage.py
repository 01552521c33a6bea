"""Lineage of a registered version, gathered from where each fact lives, and reproduction.

Code commit, spec hash, training set and data batches, params and metrics come from the
version's tags and its MLflow run; each batch is looked up in the data catalogue; the feature
views from the Feast definitions the spec generates; battery results from the `battery.*`
tags; approvals and stage history from the audit trail and the registry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mlplatform.governance import stages
from mlplatform.governance.records import trail
from mlplatform.registry import models as reg
from mlplatform.spec import UseCase
from mlplatform.tracking import registered_model_name


@dataclass(frozen=True)
class Lineage:
    """Everything recorded about how one version came to be."""

    model: str
    version: str
    run_id: str
    family: str
    stage: str
    code_commit: str
    spec_hash: str
    spec_hash_now: str
    training_set: str
    training_set_sha256: str
    data: list[dict]
    feature_service: str
    feature_views: dict[str, list[str]]
    params: dict[str, str]
    metrics: dict[str, float]
    battery: dict[str, str]
    approvals: list[dict]
    stage_history: list[str]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    def to_text(self) -> str:
        spec_note = (
            ""
            if self.spec_hash == self.spec_hash_now
            else (f"  (the spec now hashes to {self.spec_hash_now}: it changed since)")
        )
        out = [
            f"{self.model} v{self.version}  stage {self.stage}  family {self.family}",
            f"  run            {self.run_id}",
            f"  code commit    {self.code_commit}",
            f"  spec hash      {self.spec_hash}{spec_note}",
            f"  training set   {self.training_set}",
            f"                 sha256 {self.training_set_sha256 or 'not recorded'}",
            "  data versions (data catalogue):",
        ]
        for b in self.data:
            out.append(
                f"    {b['batch_id'][:12]}  {b.get('status', '?'):<11} {b.get('rows', '?'):>7} rows"
                f"  {b.get('filename', '?')}  ingested {b.get('ingested_at', '?')}"
            )
        out.append(f"  feature service {self.feature_service}:")
        for view, feats in self.feature_views.items():
            out.append(f"    {view}: {', '.join(feats)}")
        out.append("  params:")
        out += [f"    {k} = {v}" for k, v in sorted(self.params.items())]
        out.append("  metrics:")
        out += [f"    {k} = {v:.6g}" for k, v in sorted(self.metrics.items())]
        out.append("  battery:")
        out += [f"    {k}: {v}" for k, v in sorted(self.battery.items())] or ["    not run"]
        out.append("  approvals:")
        out += [
            f"    {a['at']}  {a['role']:<15} {a['actor']}  (candidacy {a['candidacy']})"
            for a in self.approvals
        ] or ["    none"]
        out.append("  stage history:")
        out += [f"    {line}" for line in self.stage_history] or ["    none"]
        return "\n".join(out)


def _batches(spec: UseCase, home: Path, ids: list[str]) -> list[dict]:
    from mlplatform.data.catalogue import Catalogue
    from mlplatform.workspace import Workspace

    cat = Catalogue(Workspace.for_usecase(home, spec.name).catalogue)
    out = []
    for batch_id in ids:
        rec = cat.get(batch_id)
        if rec is None:
            out.append({"batch_id": batch_id, "status": "not in the catalogue"})
            continue
        out.append(
            {
                k: getattr(rec, k)
                for k in ("batch_id", "filename", "rows", "status", "ingested_at", "source")
            }
            | {"schema_version": rec.schema_version, "status": rec.status.value}
        )
    return out


def feature_views(spec: UseCase) -> dict[str, list[str]]:
    """The views of the spec's training feature service, with their features."""
    from feast import FeatureView

    from mlplatform.features.definitions import build_definitions
    from mlplatform.features.tables import aggregate_column_names

    # Feast does not keep the schema's order; print features in the spec's order.
    order = [c.name for c in spec.feature_columns]
    for agg in spec.features.aggregates:
        order += aggregate_column_names(agg)
    rank = {name: i for i, name in enumerate(order)}
    return {
        name: sorted(
            (f.name for f in obj.schema if f.name not in obj.join_keys),
            key=lambda n: (rank.get(n, len(rank)), n),
        )
        for name, obj in build_definitions(spec, Path(".")).items()
        if isinstance(obj, FeatureView)
    }


def lineage(spec: UseCase, version: str, home: Path) -> Lineage:
    """Gather the lineage of `version`; KeyError when the version does not exist."""
    c = reg.client()
    name = registered_model_name(spec.name)
    try:
        mv = c.get_model_version(name, str(version))
    except Exception as exc:
        raise KeyError(f"{name} has no version {version}") from exc
    tags = dict(mv.tags)
    run = c.get_run(tags["run_id"]) if "run_id" in tags else None
    batch_ids = [b for b in tags.get("data_batches", "").split(",") if b]
    approvals = [
        r
        for r in trail(spec, home).records()
        if r.get("event") == "approval" and r.get("version") == str(version)
    ]
    history = [e.line() for e in stages.history(spec) if e.version == str(version)]
    return Lineage(
        model=name,
        version=str(version),
        run_id=tags.get("run_id", ""),
        family=tags.get("family", "?"),
        stage=stages.stage_of(spec, str(version)),
        code_commit=tags.get("git_commit", "not recorded"),
        spec_hash=tags.get("spec_hash", "not recorded"),
        spec_hash_now=spec.spec_hash(),
        training_set=tags.get("training_set", "not recorded"),
        training_set_sha256=tags.get("training_set_sha256", ""),
        data=_batches(spec, home, batch_ids),
        feature_service=tags.get("feature_service", f"{spec.name}_training"),
        feature_views=feature_views(spec),
        params=dict(run.data.params) if run else {},
        metrics=dict(run.data.metrics) if run else {},
        battery={
            k[len(reg.BATTERY_PREFIX) :]: v
            for k, v in tags.items()
            if k.startswith(reg.BATTERY_PREFIX)
        },
        approvals=approvals,
        stage_history=history,
    )
