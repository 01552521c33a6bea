"""Optional online feature lookup for the model server, from a Feast repository.

With `--feature-repo`, a request may omit the model inputs that an online feature view serves
(taxi: the pickup-area and company aggregates; credit: every row feature, keyed by the client
`id`). The server reads them from the online store by the entity keys in the request. What to
look up comes from two places only: the model's signature (which fields it needs) and the
Feast registry (which online view serves a field, and under which join keys); no column is
named here. See docs/decisions/0017-online-lookup-in-server.md.

Rules: a field the client sends (even null) wins over the store; an entity key the lookup
needs must be in the request (400 naming it); an entity without an online row is refused
(UnknownEntity, 422) or, with `on_missing="impute"`, gets nulls the model imputes as it did
for unmatched rows in training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import Counter, Histogram

from mlplatform.packaging.contract import MAX_INSTANCES
from mlplatform.serving.online_plan import (  # noqa: F401  (re-exported for callers)
    EntityKeyError,
    Fetch,
    Filled,
    Key,
    LookupPlan,
    Miss,
    OnlineStoreError,
    UnknownEntity,
    ViewLookup,
    refuse_misses,
)

log = logging.getLogger("mlplatform.serving")

ON_MISSING = ("reject", "impute")
LOOKUPS = Counter(
    "mlplatform_feature_lookups_total",
    "Rows looked up in the online store",
    ["model", "version", "view"],
)
MISSES = Counter(
    "mlplatform_feature_lookup_misses_total",
    "Looked-up rows whose entity has no online row",
    ["model", "version", "view"],
)
LOOKUP_SECONDS = Histogram(
    "mlplatform_feature_lookup_seconds",
    "Time spent in the online store per request",
    ["model", "version"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.5),
)


# Feast's primitive types by their names (str(dtype)); others pass through as sent.
_KINDS = {
    "Int64": "int",
    "Int32": "int",
    "Float64": "float",
    "Float32": "float",
    "String": "string",
}


class OnlineFeatures:
    """The server's link to one Feast repository: the plan plus the store that answers it.

    Reads go straight to the online store's `online_read` with the feature views resolved at
    start: `FeatureStore.get_online_features` rebuilt every view from its registry proto per
    feature reference (typeguard-checked): ~90% of its 5.9 ms per taxi read (six aggregates,
    two views); the direct read takes ~0.4 ms. So the views are those of start-up: restart the
    server after a `feast apply`.
    """

    def __init__(self, store, plan: LookupPlan, on_missing: str, repo: Path, views) -> None:
        from feast.infra.online_stores.helpers import get_online_store_from_config

        self.store, self.plan, self.on_missing, self.repo = store, plan, on_missing, repo
        self.views = {v.name: views[v.name] for v in plan.views}  # Feast FeatureView objects
        self.online_store = get_online_store_from_config(store.config.online_store)

    @classmethod
    def open(cls, repo: str | Path, inputs: Sequence[str], on_missing: str = "reject"):
        """Open the Feast repo (a folder with feature_store.yaml, or the yaml itself) and plan
        the lookups for a model with `inputs`; ValueError if it serves none of them."""
        from feast import FeatureStore

        if on_missing not in ON_MISSING:
            raise ValueError(f"on_missing must be one of {ON_MISSING}, not {on_missing!r}")
        path = Path(repo).resolve()
        if path.is_file():
            store = FeatureStore(repo_path=str(path.parent), fs_yaml_file=path)
        elif (path / "feature_store.yaml").is_file():
            store = FeatureStore(repo_path=str(path))
        else:
            raise ValueError(f"{path} is not a Feast repository (no feature_store.yaml)")
        _require_sqlite_file(store.config, path if path.is_dir() else path.parent)
        views, feast_views = [], {}
        for fv in store.list_feature_views():
            if fv.online:
                keys = tuple(
                    Key(c.name, _KINDS.get(str(c.dtype), "other")) for c in fv.entity_columns
                )
                views.append(ViewLookup(fv.name, keys, tuple(f.name for f in fv.features)))
                feast_views[fv.name] = fv
        plan = LookupPlan.build(views, inputs)
        if not plan.views:
            served = sorted(v.name for v in views) or "none"
            raise ValueError(
                f"the Feast repository {path} serves none of the model's inputs online "
                f"(online views: {served})"
            )
        online = cls(store, plan, on_missing, path, feast_views)
        online.check()
        return online

    def check(self) -> None:
        """Read a placeholder entity from every planned view, so an online store that was never
        materialized (no table) or cannot be reached stops the server at start, not later."""
        placeholder = {"int": 0, "float": 0.0, "string": ""}
        for v in self.plan.views:
            if all(k.kind in placeholder for k in v.keys):
                try:
                    self._fetch([v], [{k.name: placeholder[k.kind] for k in v.keys}])
                except OnlineStoreError as exc:
                    raise ValueError(f"{exc} (was `feast materialize` run?)") from exc

    def describe(self) -> str:
        return "; ".join(
            f"{v.name} by {[k.name for k in v.keys]}: {list(v.fields)}" for v in self.plan.views
        )

    def fill_v1(self, payload, labels: dict[str, str]):
        """The v1 body with omitted fields filled; anything malformed is left to the contract."""
        if not isinstance(payload, dict):
            return payload
        key = "instances" if "instances" in payload else "inputs"
        rows = payload.get(key)
        if not isinstance(rows, list) or not 0 < len(rows) <= MAX_INSTANCES:
            return payload
        if not all(isinstance(r, dict) for r in rows):
            return payload
        filled = self._fill(rows, lambda i: f"{key}[{i}]", labels)
        return {**payload, key: filled}

    def fill_v2(self, inputs: list[tuple[str, str, list]], labels: dict[str, str]):
        """The v2 (name, datatype, data) tensors with omitted ones added from the store."""
        lengths = {len(data) for _, _, data in inputs}
        if len(lengths) != 1 or not 0 < next(iter(lengths)) <= MAX_INSTANCES:
            return inputs  # the contract names the problem
        n = lengths.pop()
        rows = [{name: data[j] for name, _, data in inputs} for j in range(n)]
        filled = self._fill(rows, lambda i: f"row {i}", labels)
        dtypes = {name: dtype for name, dtype, _ in inputs}
        return [(name, dtypes.get(name, "BYTES"), [r[name] for r in filled]) for name in filled[0]]

    def _fill(self, rows: list[dict], where, labels: dict[str, str]) -> list[dict]:
        start = time.perf_counter()
        result = self.plan.fill(rows, self._fetch, where)
        if result.looked_up:
            LOOKUP_SECONDS.labels(**labels).observe(time.perf_counter() - start)
        for view, n in result.looked_up.items():
            LOOKUPS.labels(view=view, **labels).inc(n)
        for m in result.misses:
            MISSES.labels(view=m.view, **labels).inc()
        if self.on_missing == "reject":
            refuse_misses(result.misses)
        return result.rows

    def _fetch(self, views: list[ViewLookup], entity_rows: list[dict]):
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values

        values: dict[str, list] = {}
        found: dict[str, list[bool]] = {}
        for v in views:
            fv = self.views[v.name]
            names = [c.name for c in fv.entity_columns]
            try:
                columns = [
                    python_values_to_proto_values(
                        [e[c.name] for e in entity_rows], c.dtype.to_value_type()
                    )
                    for c in fv.entity_columns
                ]
            except (TypeError, ValueError) as exc:  # a key type the coercion passed through
                raise EntityKeyError(f"entity key(s) {names} of {v.name}: {exc}"[:300]) from exc
            keys = [
                EntityKey(join_keys=names, entity_values=[col[j] for col in columns])
                for j in range(len(entity_rows))
            ]
            try:
                read = self.online_store.online_read(self.store.config, fv, keys, list(v.fields))
            except Exception as exc:  # the store, not the request: a 503 that says which
                log.exception("online store read of %s failed", v.name)
                raise OnlineStoreError(
                    f"the online store of {self.repo} failed reading {v.name}: "
                    f"{type(exc).__name__}: {exc}"[:500]
                ) from exc
            found[v.name] = [data is not None for _, data in read]
            for f in v.fields:
                values[f] = [
                    feast_value_type_to_python_type(data[f]) if data and f in data else None
                    for _, data in read
                ]
        return values, found


def _require_sqlite_file(config, repo_dir: Path) -> None:
    # Feast's SQLite store creates a missing database (and its folders) on first read: a
    # mistyped path would serve nothing but misses, so it is refused before that happens.
    cfg = config.online_store
    if getattr(cfg, "type", None) == "sqlite":
        db = Path(cfg.path) if Path(cfg.path).is_absolute() else repo_dir / cfg.path
        if not db.is_file():
            raise ValueError(f"the online store {db} does not exist (was `feast materialize` run?)")


def install_error_handlers(app) -> None:
    """JSON answers like KServe's (`{"error": ...}`): 422 for an unknown entity, 503 when the
    store fails. UnknownEntity is no ValueError, so KServe's 400 handler does not take it."""
    from fastapi.responses import JSONResponse

    async def unknown(_request, exc):
        return JSONResponse(status_code=422, content={"error": str(exc)})

    async def unavailable(_request, exc):
        return JSONResponse(status_code=503, content={"error": str(exc)})

    app.add_exception_handler(UnknownEntity, unknown)
    app.add_exception_handler(OnlineStoreError, unavailable)
