"""The feature store of one use case: build tables, apply, materialize, retrieve.

Local default: parquet offline store, SQLite online store, file registry, all under the
workspace. `features.online_store: redis` in the spec switches the online store to Redis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
)
from mlplatform.spec import UseCase
from mlplatform.workspace import Workspace

log = logging.getLogger(__name__)
MISSING_INT_KEY = -1


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
        rows.to_parquet(table_path(self.data_dir, name), index=False)
        written[name] = len(rows)
        full = pd.concat(frames, ignore_index=True) if self.spec.features.aggregates else None
        for agg in self.spec.features.aggregates:
            table = aggregate_table(full, agg)
            vname = f"{self.spec.name}_{agg.name}"
            table.to_parquet(table_path(self.data_dir, vname), index=False)
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

    def training_set(self) -> pd.DataFrame:
        """Point-in-time correct training rows: label + every feature as of each event time."""
        from mlplatform.features.definitions import feature_refs

        entities = self.entity_frame()
        refs = feature_refs(self.spec, self.data_dir)
        # Feast joins on the entity columns; aggregate group keys also come from the rows view.
        group_keys = {a.group_by for a in self.spec.features.aggregates}
        refs = [r for r in refs if r.split(":")[1] not in group_keys]
        job = self.store().get_historical_features(entity_df=entities, features=refs)
        df = job.to_df()
        return df.sort_values([EVENT_TS, self.spec.entity.key]).reset_index(drop=True)

    def online(self, entity_rows: list[dict]) -> dict[str, list]:
        """Online lookup of the online views (aggregates) for request rows."""
        from mlplatform.features.definitions import feature_refs

        refs = feature_refs(self.spec, self.data_dir, online_only=True)
        return self.store().get_online_features(features=refs, entity_rows=entity_rows).to_dict()
