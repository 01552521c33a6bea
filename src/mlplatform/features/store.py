"""The feature store of one use case: build tables, apply, materialize, retrieve.

Local default: parquet offline store, SQLite online store, file registry, all under the
workspace. `features.online_store: redis` in the spec switches the online store to Redis.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml

from mlplatform.data.catalogue import Catalogue
from mlplatform.data.content import batch_hashes, first_occurrences
from mlplatform.features.definitions import build_definitions, rows_view_name, table_path
from mlplatform.features.tables import (
    EVENT_TS,
    aggregate_table,
    batch_frame,
    rows_table,
    write_table,
)
from mlplatform.spec import UseCase
from mlplatform.workspace import Workspace

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)
MISSING_INT_KEY = -1
# Entity rows per Feast call when building a training set (ADR 0028). The file offline store
# left-merges every entity row with every row of its key before its TTL filter, so one call's
# memory is (rows in the call) x (feature rows per key it can see); 4,000 rows keep the taxi
# set near 1 GB with 4 calls, and each extra call costs ~1 s of Feast/Dask overhead.
TRAINING_CHUNK_ROWS = 4000


class NoAcceptedData(RuntimeError):
    """There is nothing to build features from: every batch was quarantined or none exists."""


@dataclass(frozen=True)
class BuildResult:
    batches: tuple[str, ...]
    rows: int
    tables: dict[str, int]  # view name -> rows written


class FeatureRepo:
    """Feast for one use case, configured from the spec and the workspace."""

    def __init__(self, spec: UseCase, ws: Workspace) -> None:
        self.spec = spec
        self.ws = ws
        self.data_dir = ws.feast / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)

    # -- configuration ------------------------------------------------------------------

    def config_dict(self) -> dict:
        f = self.spec.features
        if f.online_store == "redis":
            online = {"type": "redis", "connection_string": f.redis_connection}
        else:
            online = {"type": "sqlite", "path": str(self.ws.feast / "online_store.db")}
        return {
            "project": self.spec.name,
            # A long cache TTL: the registry only changes on apply, and each refresh is logged.
            "registry": {"path": str(self.ws.feast / "registry.db"), "cache_ttl_seconds": 600},
            "provider": "local",
            "online_store": online,
            "offline_store": {"type": "file"},
            "entity_key_serialization_version": 2,
        }

    def store(self):
        from feast import FeatureStore
        from feast.repo_config import RepoConfig

        cfg = self.config_dict()
        return FeatureStore(config=RepoConfig(repo_path=self.ws.feast, **cfg))

    def write_repo_files(self) -> Path:
        """A feature_store.yaml beside the registry, so the `feast` CLI can inspect it."""
        path = self.ws.feast / "feature_store.yaml"
        path.write_text(yaml.safe_dump(self.config_dict(), sort_keys=False))
        return path

    # -- build / apply / materialize ----------------------------------------------------

    def build_tables(self) -> BuildResult:
        """Rewrite the offline tables from every usable (accepted or released) batch."""
        usable, frames = self._usable_frames()
        if not usable:
            raise NoAcceptedData(
                f"{self.spec.name}: no accepted batches; ingest data first "
                f"(`mlplatform ingest FILE -u {self.spec.name}`) and fix quarantined ones"
            )
        rows = rows_table(frames, self.spec)
        written = {}
        name = rows_view_name(self.spec)
        write_table(rows, table_path(self.data_dir, name))
        written[name] = len(rows)
        full = pd.concat(frames, ignore_index=True) if self.spec.features.aggregates else None
        for agg in self.spec.features.aggregates:
            table = aggregate_table(full, agg)
            vname = f"{self.spec.name}_{agg.name}"
            write_table(table, table_path(self.data_dir, vname))
            written[vname] = len(table)
        return BuildResult(tuple(r.batch_id for r in usable), len(rows), written)

    def _usable_frames(self) -> tuple[list, list[pd.DataFrame]]:
        """The usable batches and their frames, read once per set of batches: building the
        tables and the training set's entity frame both need them."""
        usable = Catalogue(self.ws.catalogue).usable(self.spec.name)
        ids = tuple(r.batch_id for r in usable)
        cached = self.__dict__.get("_frames")
        if cached is None or cached[0] != ids:
            frames = [batch_frame(rec, self.spec) for rec in usable]
            hashes = [batch_hashes(rec, self.spec, self.ws) for rec in usable]
            for i, keep in enumerate(first_occurrences(hashes)):
                if not keep.all():
                    log.info("batch %s: %d rows already in an earlier batch are not counted "
                             "twice", usable[i].short_id, int((~keep).sum()))
                    frames[i] = frames[i][keep].reset_index(drop=True)
            cached = (ids, frames)
            self._frames = cached
        return usable, cached[1]

    def apply(self) -> list[str]:
        objs = build_definitions(self.spec, self.data_dir)
        self.write_repo_files()
        self.store().apply(list(objs.values()))
        return sorted(objs)

    def materialize(self, end: datetime | None = None) -> datetime:
        """Load the aggregate values as of `end` into the online store; returns `end`.

        The default is the day after the newest accepted event: "now" for data that is
        current, and the last meaningful window for a historical sample like the taxi file.
        """
        if end is None:
            path = table_path(self.data_dir, rows_view_name(self.spec))
            newest = pd.read_parquet(path, columns=[EVENT_TS])[EVENT_TS].max()
            end = min(newest.to_pydatetime() + timedelta(days=1), datetime.now(UTC))
        store = self.store()
        # materialize (not incremental): rebuilt tables may hold older rows than last time.
        views = [v.name for v in store.list_feature_views() if v.online]
        if views:
            store.materialize(datetime(1970, 1, 2, tzinfo=UTC), end, feature_views=views)
        return end

    # -- retrieval --------------------------------------------------------------------

    def entity_frame(self) -> pd.DataFrame:
        """Entity key, event time, the label and the join keys of every usable row."""
        _, frames = self._usable_frames()
        keys = [self.spec.entity.key, EVENT_TS, self.spec.label, "batch_id"]
        keys += [a.group_by for a in self.spec.features.aggregates if a.group_by not in keys]
        df = pd.concat(frames, ignore_index=True)[keys]
        for a in self.spec.features.aggregates:
            if pd.api.types.is_integer_dtype(df[a.group_by].dtype):
                # A missing group key can join no aggregate; Feast's merge cannot take <NA>,
                # and -1 is outside every integer key range we aggregate on.
                df[a.group_by] = df[a.group_by].fillna(MISSING_INT_KEY).astype("int64")
        df = df.drop_duplicates(subset=[self.spec.entity.key], keep="last")
        unlabelled = df[self.spec.label].isna()
        if unlabelled.any():
            # Allowed by the spec's null limit for the label; such rows still build features
            # (and are scored), but a row without a label cannot train or evaluate a model.
            log.info("%d rows without a label %r are left out of the training set",
                     int(unlabelled.sum()), self.spec.label)
            df = df[~unlabelled]
        return df

    def training_set(self, chunk_rows: int | None = TRAINING_CHUNK_ROWS) -> pd.DataFrame:
        """Point-in-time correct training rows: label + every feature as of each event time.

        `chunk_rows` bounds the entity rows per Feast call (see `historical_features`);
        None asks Feast once for everything, the way before ADR 0028 (~9 GB on the taxi data).
        """
        return self.historical_features(self.entity_frame(), chunk_rows=chunk_rows)

    def training_refs(self) -> list[str]:
        """The feature references of the training set, rows view first."""
        from mlplatform.features.definitions import feature_refs

        refs = feature_refs(self.spec, self.data_dir)
        # Feast joins on the entity columns; aggregate group keys also come from the rows view.
        group_keys = {a.group_by for a in self.spec.features.aggregates}
        return [r for r in refs if r.split(":")[1] not in group_keys]

    def historical_features(
        self, entities: pd.DataFrame, chunk_rows: int | None = TRAINING_CHUNK_ROWS
    ) -> pd.DataFrame:
        """Feast's point-in-time join of every training feature onto `entities`.

        `entities` holds the entity key, `event_timestamp` and the aggregates' group keys
        (other columns pass through), as `entity_frame` returns. The result is exactly what
        one `get_historical_features` call over all of `entities` returns, sorted by event
        time and key, columns in a fixed order: the entity frame's, then the features'.

        With `chunk_rows`, Feast is called once per run of at most `chunk_rows` entity rows
        in event-time order (a run never splits one timestamp), each time on copies of the
        feature tables cut to what that run can see (ADR 0028); None makes one call.
        """
        if chunk_rows is not None and chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive number of rows or None, "
                             f"not {chunk_rows!r}")
        needed = {self.spec.entity.key, EVENT_TS} | {
            a.group_by for a in self.spec.features.aggregates
        }
        missing = sorted(needed - set(entities.columns))
        if missing:
            raise ValueError(f"{self.spec.name}: the entity frame lacks the columns {missing} "
                             f"that Feast joins on (FeatureRepo.entity_frame builds one)")
        refs = self.training_refs()
        store = self.store()
        if chunk_rows is None:
            df = store.get_historical_features(entity_df=entities, features=refs).to_df()
        else:
            with tempfile.TemporaryDirectory(prefix=".training-set-", dir=self.ws.feast) as tmp:
                df = _chunked_historical(store, entities, refs, chunk_rows, Path(tmp))
        # One order whatever Feast returns (its column order follows the refs' order).
        columns = [*entities.columns, *(r.split(":")[1] for r in refs)]
        df = df[columns]
        return df.sort_values([EVENT_TS, self.spec.entity.key]).reset_index(drop=True)

    def online(self, entity_rows: list[dict]) -> dict[str, list]:
        """Online lookup of the online views (aggregates) for request rows."""
        from mlplatform.features.definitions import feature_refs

        refs = feature_refs(self.spec, self.data_dir, online_only=True)
        return self.store().get_online_features(features=refs, entity_rows=entity_rows).to_dict()


# -- chunked point-in-time retrieval (ADR 0028) ----------------------------------------


def _chunked_historical(
    store: FeatureStore, entities: pd.DataFrame, refs: list[str], chunk_rows: int, tmp: Path
) -> pd.DataFrame:
    """`get_historical_features` in runs of entity rows, each on feature tables cut to the
    rows that run can join, so no call merges more than a run's worth of rows.

    The same offline store does every join: only its input shrinks. Feast's `FeatureStore`
    always reads a view's registered source, so the views (copies with a cut source) go to
    the offline store's own `get_historical_features`, as `FeatureStore` passes them.
    """
    from feast.infra.offline_stores.offline_utils import get_offline_store_from_config
    from feast.utils import make_df_tzaware

    names = list(dict.fromkeys(r.split(":")[0] for r in refs))
    views = [store.get_feature_view(n) for n in names]
    tables = {v.name: _read_source(v, store.config.repo_path) for v in views}
    offline = get_offline_store_from_config(store.config.offline_store)
    if store.config.coerce_tz_aware:
        entities = make_df_tzaware(entities)  # what FeatureStore does before its call
    entities = entities.sort_values(EVENT_TS, kind="stable").reset_index(drop=True)
    parts = []
    for i, piece in enumerate(_runs(entities, chunk_rows)):
        cut = [
            _with_source(v, _cut_table(tables[v.name], v, piece), tmp / f"{v.name}-{i}.parquet")
            for v in views
        ]
        job = offline.get_historical_features(
            config=store.config,
            feature_views=cut,
            feature_refs=refs,
            entity_df=piece,
            registry=store.registry,
            project=store.project,
            full_feature_names=False,
        )
        parts.append(job.to_df())
        log.debug("training set: run %d, %d entity rows", i, len(piece))
    return pd.concat(parts, ignore_index=True)


def _runs(entities: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    """Consecutive runs of at most `size` rows of time-sorted entities, except that a run is
    extended to the last row of its final timestamp: Feast de-duplicates on the join keys
    and the event time, so rows of one instant stay in one call (credit's batch rows all
    share their ingestion time and so form one run; its only view joins one row per key)."""
    times = entities[EVENT_TS]
    start = 0
    while start < len(entities):
        end = min(start + size, len(entities))
        if end < len(entities):
            end = int(times.searchsorted(times.iloc[end - 1], side="right"))
        yield entities.iloc[start:end]
        start = end


def _read_source(view: FeatureView, repo_path: Path | None) -> pd.DataFrame:
    """A view's whole offline table, resolved as Feast's file store resolves it."""
    path = Path(view.batch_source.path)
    if not path.is_absolute() and repo_path is not None:
        path = Path(repo_path) / path
    return pd.read_parquet(path)


def _cut_table(table: pd.DataFrame, view: FeatureView, piece: pd.DataFrame) -> pd.DataFrame:
    """The rows of `table` that give `piece` exactly the features the whole table gives it.

    Feast left-merges on the join keys, keeps the merged rows stamped inside
    [event time - TTL, event time] (or with no stamp), and takes the latest; an entity row
    whose key has rows but none inside is dropped. So keep: the rows of the piece's keys
    stamped inside [first event time - TTL, last event time] or unstamped, plus one row
    (outside every window of the piece) of each key that has no such row, so that Feast
    still drops what it would drop with the whole table.
    """
    ts = view.batch_source.timestamp_field
    source_keys = [c.name for c in view.entity_columns]
    if not source_keys:
        return table  # an entityless view joins every row to every entity: nothing to cut
    entity_keys = [view.projection.join_key_map.get(k, k) for k in source_keys]
    wanted = piece[entity_keys].drop_duplicates()
    wanted.columns = source_keys
    mine = table[_has_key(table, source_keys, wanted)]
    inside = mine[ts].isna() | (mine[ts] <= piece[EVENT_TS].max())
    if view.ttl:  # no TTL (None or 0): Feast only asks for rows at or before the event time
        inside &= mine[ts].isna() | (mine[ts] >= piece[EVENT_TS].min() - view.ttl)
    kept = mine[inside]
    outside = mine[~inside]
    stand_ins = outside[~_has_key(outside, source_keys, kept[source_keys])]
    return pd.concat([kept, stand_ins.drop_duplicates(source_keys)])


def _has_key(frame: pd.DataFrame, keys: list[str], other: pd.DataFrame) -> pd.Series:
    """Which rows of `frame` have a key found in `other`, matched as pandas' merge matches
    (the merge Feast joins with), so a null key finds what it would find there."""
    probe = frame[keys].merge(other[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    return pd.Series((probe["_merge"] == "both").to_numpy(), index=frame.index)


def _with_source(view: FeatureView, table: pd.DataFrame, path: Path) -> FeatureView:
    """A copy of `view` reading `table` (written to `path`) instead of its registered file."""
    from feast import FileSource

    src = view.batch_source
    table.to_parquet(path, index=False)
    out = copy.copy(view)
    out.batch_source = FileSource(
        name=src.name,
        path=str(path),
        timestamp_field=src.timestamp_field,
        created_timestamp_column=src.created_timestamp_column,
        field_mapping=src.field_mapping,
    )
    return out
