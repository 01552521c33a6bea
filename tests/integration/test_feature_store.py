"""Feast smoke workflow per use case: apply, point-in-time training set, materialize, online
lookup, teardown — on real Feast with the SQLite online store, and on Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pandas as pd
import pytest

from mlplatform.features.definitions import rows_view_name, table_path
from mlplatform.features.store import FeatureRepo, NoAcceptedData
from mlplatform.features.tables import EVENT_TS
from mlplatform.spec import Features
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.schema import build_schema
from mlplatform.workspace import Workspace

from ..conftest import source_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def taxi_repo(trained_taxi, tmp_path_factory):
    """The shared taxi workspace's Feast repo and training set, in a home of its own: this
    module materializes, and other modules read the shared online store. Re-applied in the
    copy (so the registry names the copy's tables) with an empty online store, so that the
    materialize test sees materialize fill it, not the shared build's earlier run."""
    home = trained_taxi.own_home(tmp_path_factory, "feast")
    repo = FeatureRepo(trained_taxi.spec, Workspace.for_usecase(home, "taxi"))
    (repo.ws.feast / "online_store.db").unlink()
    repo.apply()
    return repo, pd.read_parquet(trained_taxi.training_set)


def test_training_set_has_every_accepted_row(taxi_repo):
    repo, ts = taxi_repo
    assert len(ts) == 15002 and ts["trip_id"].is_unique
    assert "tips" not in ts.columns  # excluded (leaks the label)
    for c in repo.spec.feature_columns:
        assert c.name in ts.columns
    assert {"pickup_area_stats_trips", "company_stats_mean_fare"} <= set(ts.columns)
    assert abs(ts["big_tipper"].mean() - 0.2249) < 1e-3


def test_aggregates_are_point_in_time(taxi_repo, shared_data):
    """A trip's area aggregate counts only trips of earlier days inside the window."""
    repo, ts = taxi_repo
    raw = pd.read_csv(shared_data / "chicago_taxi" / "data.csv")
    raw["t"] = pd.to_datetime(raw["trip_start_timestamp"], unit="s", utc=True)
    window = repo.spec.features.aggregates[0].window_days
    sample = ts[ts["pickup_community_area"] > 0].sample(40, random_state=3)
    for _, row in sample.iterrows():
        day = row[EVENT_TS].floor("D")
        same = raw[raw["pickup_community_area"] == row["pickup_community_area"]]
        inside = same[(same["t"] < day) & (same["t"] >= day - pd.Timedelta(days=window))]
        assert row["pickup_area_stats_trips"] == len(inside)
        if len(inside):
            assert row["pickup_area_stats_mean_fare"] == pytest.approx(inside["fare"].mean())


def test_materialize_and_online_lookup_match_offline(taxi_repo):
    repo, _ = taxi_repo
    request = [{"pickup_community_area": 8, "company": "Taxi Affiliation Services"}]
    assert repo.online(request)["pickup_area_stats_trips"] == [None]  # nothing loaded yet
    end = repo.materialize()
    offline = pd.read_parquet(table_path(repo.data_dir, "taxi_pickup_area_stats"))
    latest = offline[(offline["pickup_community_area"] == 8) & (offline[EVENT_TS] <= end)]
    expected = latest.sort_values(EVENT_TS).iloc[-1]
    got = repo.online(request)
    assert got["pickup_area_stats_trips"] == [expected["pickup_area_stats_trips"]]
    assert got["pickup_area_stats_mean_fare"][0] == pytest.approx(
        expected["pickup_area_stats_mean_fare"]
    )


def test_no_accepted_data_is_a_clear_error(taxi, workspace_factory):
    with pytest.raises(NoAcceptedData, match="no accepted batches"):
        FeatureRepo(taxi, workspace_factory(taxi)).build_tables()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: `make test` installs it (Debian redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_credit_online_store_on_redis(credit, workspace_factory, redis_url):
    spec = credit.model_copy(
        update={"features": Features(online_store="redis", redis_connection=redis_url)}
    )
    ws = workspace_factory(spec)
    assert Gate(spec, build_schema(spec), ws).process(source_of(spec)).accepted
    repo = FeatureRepo(spec, ws)
    repo.build_tables()
    repo.apply()
    repo.materialize()
    got = repo.online([{"id": 1}, {"id": 30000}])
    rows = pd.read_parquet(table_path(repo.data_dir, rows_view_name(spec))).set_index("id")
    assert got["limit_bal"] == [rows.loc[1, "limit_bal"], rows.loc[30000, "limit_bal"]]
    assert got["education"] == [rows.loc[1, "education"], rows.loc[30000, "education"]]
    repo.store().teardown()
