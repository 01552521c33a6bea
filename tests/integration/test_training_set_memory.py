"""The chunked training set (ADR 0028) is exactly Feast's one-call result: same rows, columns,
values and dtypes, on the shipped taxi and credit data with real Feast.

The reference is one `get_historical_features` call over the whole entity frame, the way
before ADR 0028. On all 15,002 taxi trips that call peaks near 9 GB, so the taxi comparison
uses 2,500 sampled trips (all years, areas and companies, trips without a company or area)
against the full feature tables; `bench/memory.py` compares the full set.
"""

from __future__ import annotations

import pandas as pd
import pytest

from mlplatform.features.store import TRAINING_CHUNK_ROWS, FeatureRepo
from mlplatform.features.tables import EVENT_TS
from mlplatform.spec import UseCase
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.schema import build_schema
from mlplatform.workspace import Workspace

from ..conftest import source_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module", params=["taxi", "credit"])
def repo(request, tmp_path_factory) -> FeatureRepo:
    """The use case's shipped file gated, its feature tables built and applied."""
    spec: UseCase = request.getfixturevalue(request.param)
    ws = Workspace.for_usecase(tmp_path_factory.mktemp(f"memory-{spec.name}") / "home", spec.name)
    assert Gate(spec, build_schema(spec), ws).process(source_of(spec)).accepted
    repo = FeatureRepo(spec, ws)
    repo.build_tables()
    repo.apply()
    return repo


def _entities(repo: FeatureRepo) -> pd.DataFrame:
    """Entity rows that matter for the comparison, per use case."""
    entities = repo.entity_frame()
    key = repo.spec.entity.key
    if repo.spec.name == "taxi":
        sample = entities.sample(2500, random_state=20261204)
        # Trips five years after the data: their areas have rows, none inside the 30-day TTL,
        # and Feast's file store drops such rows; cut tables must make it drop them too.
        late = sample[sample["pickup_community_area"] > 0].head(20).copy()
        late[EVENT_TS] += pd.Timedelta(days=5 * 365)
        late[key] = late[key] + "-late"
        return pd.concat([sample, late], ignore_index=True)
    # Credit has no event time: every row carries its batch's ingestion time, so the rows
    # form one run. Spread a copy over later days too, so that several runs are compared.
    later = entities.copy()
    later[EVENT_TS] += pd.to_timedelta(later.index % 400 + 1, unit="D")
    return pd.concat([entities, later.sample(3000, random_state=1)], ignore_index=True)


def test_chunked_training_set_equals_one_feast_call(repo):
    entities = _entities(repo)
    one_call = repo.historical_features(entities, chunk_rows=None)
    for chunk_rows in (300, TRAINING_CHUNK_ROWS):
        chunked = repo.historical_features(entities, chunk_rows=chunk_rows)
        pd.testing.assert_frame_equal(chunked, one_call)
    # The comparison covers what makes cutting tables delicate.
    key = repo.spec.entity.key
    if repo.spec.name == "taxi":
        assert len(one_call) == 2500  # the 20 late trips are dropped, the same way
        assert not one_call[key].str.endswith("-late").any()
        assert one_call["company"].isna().any() and one_call["company_stats_trips"].isna().any()
        assert (one_call["pickup_area_stats_trips"] > 0).sum() > 2000
        assert one_call[EVENT_TS].dt.year.nunique() == 4
    else:
        assert len(one_call) == 33000 and one_call[EVENT_TS].nunique() > 300
        assert one_call["limit_bal"].notna().all()


def test_training_set_columns_are_entity_then_spec_order(repo):
    """Feast orders its feature columns by hash; the training set's are fixed."""
    entities = repo.entity_frame().head(500)
    got = repo.historical_features(entities, chunk_rows=100)
    features = [r.split(":")[1] for r in repo.training_refs()]
    assert list(got.columns) == [*entities.columns, *features]
    rows_features = [c.name for c in repo.spec.feature_columns]
    group_keys = {a.group_by for a in repo.spec.features.aggregates}
    assert features[: len(rows_features) - len(group_keys)] == [
        c for c in rows_features if c not in group_keys
    ]


def test_bad_arguments_are_clear_errors(repo):
    with pytest.raises(ValueError, match="chunk_rows must be a positive"):
        repo.historical_features(repo.entity_frame(), chunk_rows=0)
    with pytest.raises(ValueError, match="lacks the columns"):
        repo.historical_features(repo.entity_frame().drop(columns=[EVENT_TS]))
