"""The model server's online feature lookup (--feature-repo) on the trained taxi workspace: a
request without the Feast aggregates is scored as if the client had sent the values the
online store holds; a missing entity key is a 400 naming it, an unknown entity a 422 naming it,
and /metrics counts lookups and misses by version."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pandas as pd
import pytest

from mlplatform.features.store import FeatureRepo
from mlplatform.features.tables import aggregate_column_names
from mlplatform.registry import models as reg
from mlplatform.release import local_stack as ls
from mlplatform.tracking import tracking_uri, use_workspace
from mlplatform.training.preprocessing import model_inputs
from mlplatform.workspace import Workspace

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(trained_taxi, tmp_path_factory):
    """A lookup-enabled server on the fixture's Feast repo (materialized by features_job)."""
    home = trained_taxi.own_home(tmp_path_factory, "online")
    out = trained_taxi.run
    version = reg.register(trained_taxi.spec, out.run_id, out.model_uri, {})
    reg.client().set_registered_model_alias("taxi-classifier", "champion", version)
    # The original workspace's repo: the copy's feature_store.yaml still names its paths.
    repo = Workspace.for_usecase(trained_taxi.home, "taxi").feast
    p = ls.model_server(
        "server",
        "taxi",
        "models:/taxi-classifier@champion",
        tracking_uri(home),
        home,
        extra_args=["--feature-repo", str(repo)],
    )
    try:
        ls.wait_ready(p, ls.READY["model"])
        yield p.url, f"taxi-classifier/{version}"
    finally:
        ls.stop(p)


@pytest.fixture(scope="module")
def rows(trained_taxi):
    """Recent training rows with both group keys, as a client would send them (all inputs)."""
    numeric, categorical = model_inputs(trained_taxi.spec)
    ts = pd.read_parquet(trained_taxi.training_set)
    keys = [a.group_by for a in trained_taxi.spec.features.aggregates]
    recent = ts.dropna(subset=keys).tail(5)[numeric + categorical]
    return json.loads(recent.to_json(orient="records"))


def _aggregates(spec) -> list[str]:
    return [n for a in spec.features.aggregates for n in aggregate_column_names(a)]


def _post(url: str, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_omitted_aggregates_are_looked_up_like_by_hand(served, rows, trained_taxi):
    base, version = served
    spec = trained_taxi.spec
    aggs = _aggregates(spec)
    bare = [{k: v for k, v in r.items() if k not in aggs} for r in rows]
    # By hand: the same rows completed through FeatureRepo.online in the pipeline env.
    repo = FeatureRepo(spec, Workspace.for_usecase(trained_taxi.home, "taxi"))
    keys = [a.group_by for a in spec.features.aggregates]
    online = repo.online([{k: r[k] for k in keys} for r in bare])
    by_hand = [dict(r, **{a: online[a][i] for a in aggs}) for i, r in enumerate(bare)]
    counts = [aggregate_column_names(a)[0] for a in spec.features.aggregates]
    assert all(v is not None for c in counts for v in online[c])  # every entity is online

    code, looked_up = _post(f"{base}/v1/models/taxi:predict", {"instances": bare})
    assert code == 200, looked_up
    code, sent = _post(f"{base}/v1/models/taxi:predict", {"instances": by_hand})
    assert code == 200, sent
    assert looked_up["model_version"] == version
    got = [p["probability"] for p in looked_up["predictions"]]
    assert got == pytest.approx([p["probability"] for p in sent["predictions"]], abs=1e-12)
    # ... and the trip's own historical aggregates (a different moment) would differ somewhere:
    # the lookup really read the store, not the values the row was trained with.
    assert any(by_hand[i][a] != rows[i][a] for i in range(len(rows)) for a in aggs)


def test_v2_tensors_can_be_omitted_too(served, rows, trained_taxi):
    base, _ = served
    aggs = set(_aggregates(trained_taxi.spec))
    names = [n for n in rows[0] if n not in aggs]
    inputs = [
        {
            "name": n,
            "shape": [len(rows)],
            "datatype": "BYTES" if isinstance(rows[0][n], str) else "FP64",
            "data": [r[n] for r in rows],
        }
        for n in names
    ]
    code, body = _post(f"{base}/v2/models/taxi/infer", {"id": "o1", "inputs": inputs})
    assert code == 200, body
    v1 = _post(
        f"{base}/v1/models/taxi:predict",
        {"instances": [{n: r[n] for n in names} for r in rows]},
    )[1]
    probs = {o["name"]: o["data"] for o in body["outputs"]}["probability"]
    assert probs == pytest.approx([p["probability"] for p in v1["predictions"]], abs=1e-12)


def test_a_missing_entity_key_is_a_400_naming_it(served, rows, trained_taxi):
    base, _ = served
    aggs = set(_aggregates(trained_taxi.spec))
    key = trained_taxi.spec.features.aggregates[1].group_by  # company
    row = {k: v for k, v in rows[0].items() if k not in aggs and k != key}
    code, body = _post(f"{base}/v1/models/taxi:predict", {"instances": [row]})
    assert code == 400 and f"entity key '{key}'" in body["error"], body


def test_an_unknown_entity_is_a_422_naming_it(served, rows, trained_taxi):
    base, _ = served
    aggs = set(_aggregates(trained_taxi.spec))
    key = trained_taxi.spec.features.aggregates[1].group_by
    row = {k: v for k, v in rows[0].items() if k not in aggs}
    row[key] = "No Such Cab Company"
    code, body = _post(f"{base}/v1/models/taxi:predict", {"instances": [row]})
    assert code == 422, body
    assert "No Such Cab Company" in body["error"] and key in body["error"]


def test_metrics_count_lookups_and_misses_by_version(served, rows, trained_taxi):
    base, version = served
    aggs = set(_aggregates(trained_taxi.spec))
    bare = {k: v for k, v in rows[0].items() if k not in aggs}
    key = trained_taxi.spec.features.aggregates[1].group_by
    assert _post(f"{base}/v1/models/taxi:predict", {"instances": [bare]})[0] == 200
    assert (
        _post(f"{base}/v1/models/taxi:predict", {"instances": [dict(bare, **{key: "?"})]})[0] == 422
    )
    text = urllib.request.urlopen(f"{base}/metrics").read().decode()
    label = f'version="{version}"'
    lines = [line for line in text.splitlines() if label in line]
    views = {f"taxi_{a.name}" for a in trained_taxi.spec.features.aggregates}
    for view in views:
        assert any(
            line.startswith("mlplatform_feature_lookups_total") and f'view="{view}"' in line
            for line in lines
        ), view
    assert any(line.startswith("mlplatform_feature_lookup_seconds_count") for line in lines)
    misses = [line for line in lines if line.startswith("mlplatform_feature_lookup_misses_total")]
    assert misses and float(misses[0].rsplit(" ", 1)[1]) >= 1  # the unknown company
    assert 'code="422"' in text


def test_a_repo_the_server_cannot_use_is_refused_at_start(trained_taxi, tmp_path):
    """What `--feature-repo` refuses before serving (the server then exits 2 with the message)."""
    import yaml

    from mlplatform.serving.online import OnlineFeatures

    repo = Workspace.for_usecase(trained_taxi.home, "taxi").feast
    numeric, categorical = model_inputs(trained_taxi.spec)
    with pytest.raises(ValueError, match="no feature_store.yaml"):
        OnlineFeatures.open(tmp_path, numeric + categorical)
    with pytest.raises(ValueError, match="serves none of the model's inputs"):
        OnlineFeatures.open(repo, ["fare", "payment_type"])
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    config["online_store"]["path"] = str(tmp_path / "never-materialized.db")
    (tmp_path / "feature_store.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="never-materialized.db does not exist"):
        OnlineFeatures.open(tmp_path, numeric + categorical)
    assert not (tmp_path / "never-materialized.db").exists()  # and none was created


@pytest.mark.slow  # its own credit workspace: gate, Feast build and training take ~90 s
def test_credit_is_scored_from_the_client_id_alone(tmp_path_factory):
    """Credit's row features are online keyed by the client id (not a model input): a body of
    only {"id": ...} is scored as the client's full row; the client's own values still win."""
    from .conftest import train_workspace

    home = tmp_path_factory.mktemp("online-credit") / "home"
    trained = train_workspace("credit", home)
    spec, run, ts = trained.spec, trained.run, trained.training_set
    ws = Workspace.for_usecase(home, "credit")
    use_workspace(home, "credit")
    version = reg.register(spec, run.run_id, run.model_uri, {})
    reg.client().set_registered_model_alias("credit-classifier", "champion", version)
    p = ls.model_server(
        "server",
        "credit",
        "models:/credit-classifier@champion",
        tracking_uri(home),
        home,
        extra_args=["--feature-repo", str(ws.feast)],
    )
    try:
        ls.wait_ready(p, ls.READY["model"])
        url = f"{p.url}/v1/models/credit:predict"
        key = spec.entity.key
        table = pd.read_parquet(ts).set_index(key)
        ids = [int(i) for i in table.index[[0, 123, -1]]]
        features = [c.name for c in spec.feature_columns]
        full = json.loads(table.loc[ids, features].to_json(orient="records"))
        code, by_id = _post(url, {"instances": [{key: i} for i in ids]})
        assert code == 200, by_id
        code, sent = _post(url, {"instances": full})
        assert code == 200, sent
        got = [r["probability"] for r in by_id["predictions"]]
        assert got == pytest.approx([r["probability"] for r in sent["predictions"]], abs=1e-12)
        num = next(c.name for c in spec.feature_columns if c.is_numeric)
        changed = dict(full[0], **{num: full[0][num] * 10 + 1})
        code, mine = _post(url, {"instances": [{key: ids[0], num: changed[num]}]})
        code2, expected = _post(url, {"instances": [changed]})
        assert code == code2 == 200
        assert mine["predictions"] == expected["predictions"]  # the client's value won
        code, body = _post(url, {"instances": [{key: 10**9}]})
        assert code == 422 and str(10**9) in body["error"] and key in body["error"]
    finally:
        ls.stop(p)
