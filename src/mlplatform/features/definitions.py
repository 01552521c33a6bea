"""Feast objects (entities, sources, feature views, a feature service) built from the spec.

Nothing here lists a column by hand: the views are the spec's feature columns and its
declared aggregates, so the training set and the online lookup can never disagree.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

from mlplatform.features.tables import EVENT_TS, aggregate_column_names
from mlplatform.spec import ColumnType, UseCase

_FEAST_TYPES = {
    ColumnType.INT: Int64,
    ColumnType.FLOAT: Float64,
    ColumnType.CATEGORY: String,
    ColumnType.STRING: String,
}
_VALUE_TYPES = {
    ColumnType.INT: ValueType.INT64,
    ColumnType.FLOAT: ValueType.DOUBLE,
    ColumnType.CATEGORY: ValueType.STRING,
    ColumnType.STRING: ValueType.STRING,
}
# Row features of data without event times never expire; aggregates expire with their window.
_ROW_TTL = timedelta(days=3650)


def rows_view_name(spec: UseCase) -> str:
    return f"{spec.name}_{spec.entity.name}_features"


def table_path(data_dir: Path, view: str) -> Path:
    return Path(data_dir) / f"{view}.parquet"


def build_definitions(spec: UseCase, data_dir: Path) -> dict[str, object]:
    """All Feast objects of the use case, by the name Feast will register them under."""
    objs: dict[str, object] = {}
    key_type = (
        ValueType.STRING
        if spec.entity.derive == "row_number"
        else _VALUE_TYPES[spec.column(spec.entity.key).type]
    )
    entity = Entity(
        name=spec.entity.name,
        join_keys=[spec.entity.key],
        value_type=key_type,
        description=f"{spec.name}: one {spec.entity.name}",
    )
    objs[entity.name] = entity
    view_name = rows_view_name(spec)
    rows = FeatureView(
        name=view_name,
        entities=[entity],
        ttl=_ROW_TTL,
        schema=[
            Field(name=c.name, dtype=_FEAST_TYPES[c.type], description=c.description)
            for c in spec.feature_columns
        ],
        source=FileSource(
            name=f"{view_name}_source",
            path=str(table_path(data_dir, view_name)),
            timestamp_field=EVENT_TS,
        ),
        # A natural key (a client id) is looked up when serving; rows keyed by a derived id
        # (a trip) arrive with the request, so only their aggregates go online.
        online=spec.entity.derive == "column",
        tags={"usecase": spec.name, "kind": "rows"},
    )
    objs[view_name] = rows
    views = [rows]
    for agg in spec.features.aggregates:
        gcol = spec.column(agg.group_by)
        group = Entity(
            name=agg.group_by, join_keys=[agg.group_by], value_type=_VALUE_TYPES[gcol.type]
        )
        objs.setdefault(group.name, group)
        name = f"{spec.name}_{agg.name}"
        counts, *means = aggregate_column_names(agg)
        fv = FeatureView(
            name=name,
            entities=[group],
            ttl=timedelta(days=agg.window_days),
            schema=[
                Field(name=counts, dtype=Int64),
                *[Field(name=m, dtype=Float64) for m in means],
            ],
            source=FileSource(
                name=f"{name}_source",
                path=str(table_path(data_dir, name)),
                timestamp_field=EVENT_TS,
            ),
            online=True,
            tags={"usecase": spec.name, "kind": "aggregate", "window_days": str(agg.window_days)},
        )
        objs[name] = fv
        views.append(fv)
    service = FeatureService(
        name=f"{spec.name}_training", features=views, tags={"usecase": spec.name}
    )
    objs[service.name] = service
    return objs


def feature_refs(spec: UseCase, data_dir: Path, online_only: bool = False) -> list[str]:
    """`view:feature` references of the use case's views, in the spec's order."""
    refs = []
    for obj in build_definitions(spec, data_dir).values():
        if isinstance(obj, FeatureView) and (obj.online or not online_only):
            # `features`, not `schema`: Feast builds `schema` from a set, so its order (and a
            # training set's column order) would change from one process to the next.
            refs.extend(f"{obj.name}:{f.name}" for f in obj.features if f.name not in obj.join_keys)
    return refs
