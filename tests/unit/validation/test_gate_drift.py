"""The gate on ordinary batches after the first: drift against the reference, judged at the
batch's size, on every feature and the label; content seen before; batches too small."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlplatform.data.catalogue import BatchStatus
from mlplatform.data.corpus import read_clean, split_clean
from mlplatform.spec import SpecError, load_spec
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.reference import record_champion, reference_profile
from mlplatform.validation.schema import build_schema

from ...conftest import source_of


def _gate(spec, ws):
    return Gate(spec, build_schema(spec), ws)


def _with(spec, **validation):
    return spec.model_copy(update={"validation": spec.validation.model_copy(update=validation)})


@pytest.fixture
def accepted_file(taxi, workspace_factory):
    """The whole taxi file accepted: the reference for everything after it."""
    ws = workspace_factory(taxi)
    out = _gate(taxi, ws).process(source_of(taxi))
    assert out.accepted and out.report.reference is None
    return ws


def _sample(spec, tmp_path, n, seed=0, name="sample.csv", frame=None):
    df = read_clean(source_of(spec), spec) if frame is None else frame
    idx = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    path = tmp_path / name
    df.iloc[idx].to_csv(path, index=False)
    return path


def test_a_clean_sample_of_the_accepted_file_is_not_drift(taxi, accepted_file, tmp_path):
    # The story: 3,000 rows of the accepted file. Not drift; reported as re-sent rows.
    out = _gate(taxi, accepted_file).process(_sample(taxi, tmp_path, 3000))
    assert out.report.kinds() == {"OVERLAP"}, out.report.summary()
    assert out.report.overlap_fraction == 1.0
    assert "100.0% of rows (3,000 of 3,000)" in out.report.anomalies[0].description
    judged = {d["feature"] for d in out.report.drift}
    assert judged == set(taxi.gate_thresholds()) and "big_tipper" in judged
    assert "trip_start_month" not in judged  # gate_drift: off, with its reason in the spec
    assert out.report.reference == "the accepted history (1 batch, 15,002 rows)"


def test_overlap_accept_lets_the_sample_in_and_counts_it_once(taxi, accepted_file, tmp_path):
    from mlplatform.features.store import FeatureRepo

    spec = _with(taxi, overlap="accept")
    out = _gate(spec, accepted_file).process(_sample(taxi, tmp_path, 3000))
    assert out.accepted and [w.kind for w in out.report.warnings] == ["OVERLAP"]
    _, frames = FeatureRepo(spec, accepted_file)._usable_frames()
    assert [len(f) for f in frames] == [15_002, 0]  # the re-sent rows enter training once


@pytest.mark.parametrize("n", [100, 1000, 3000, 7000])
def test_a_new_batch_from_the_same_source_passes_at_any_size(taxi, workspace_factory, n, tmp_path):
    first, rest = split_clean(source_of(taxi), taxi, tmp_path / "parts", (0.5, 0.5))
    ws = workspace_factory(taxi)
    assert _gate(taxi, ws).process(first).accepted
    out = _gate(taxi, ws).process(_sample(taxi, tmp_path, n, frame=read_clean(rest, taxi)))
    assert out.accepted, out.report.to_text()
    noise = {d["feature"]: d["noise_threshold"] for d in out.report.drift}
    assert noise["fare"] > 0  # the threshold at n is reported with its sampling part


def test_a_tiny_batch_is_held_as_too_small_and_schema_checks_still_apply(
    taxi, accepted_file, tmp_path
):
    # Complete rows: null-rate limits on three rows are a separate matter (see issue 14's note).
    full = read_clean(source_of(taxi), taxi)
    full = full[full["company"].notna() & full["dropoff_census_tract"].notna()]
    out = _gate(taxi, accepted_file).process(_sample(taxi, tmp_path, 3, seed=1, frame=full))
    assert out.record.status is BatchStatus.QUARANTINED
    assert out.report.kinds() == {"TOO_SMALL_FOR_DRIFT", "OVERLAP"}, out.report.summary()
    (a,) = [a for a in out.report.anomalies if a.kind == "TOO_SMALL_FOR_DRIFT"]
    assert "too small to judge drift (n=3, minimum drift.min_rows=50)" in a.description
    accept_small = taxi.model_copy(
        update={"drift": taxi.drift.model_copy(update={"too_small": "accept"})}
    )
    bad = full.iloc[100:103].assign(fare=-5.0)
    bad.to_csv(tmp_path / "bad3.csv", index=False)
    judged = _gate(accept_small, accepted_file).process(tmp_path / "bad3.csv")
    assert judged.report.kinds() == {"RANGE"} and not judged.accepted
    assert [w.kind for w in judged.report.warnings] == ["TOO_SMALL_FOR_DRIFT"]
    ok = _gate(_with(accept_small, overlap="accept"), accepted_file).process(
        _sample(taxi, tmp_path, 3, seed=2, frame=full, name="ok3.csv")
    )
    assert ok.accepted, ok.report.summary()
    assert {w.kind for w in ok.report.warnings} == {"TOO_SMALL_FOR_DRIFT", "OVERLAP"}
    assert "warning [TOO_SMALL_FOR_DRIFT]" in ok.report.to_text()


def test_changes_inside_the_ranges_are_caught(taxi, accepted_file, tmp_path):
    first, rest = split_clean(source_of(taxi), taxi, tmp_path / "p", (0.5, 0.5), seed=3)
    fresh = read_clean(rest, taxi).iloc[:3000]
    cases = {
        "trip_seconds": fresh.assign(trip_seconds=(fresh["trip_seconds"] / 60).round()),
        "payment_type": fresh.assign(payment_type="Cash"),
        "big_tipper": fresh.assign(big_tipper=1 - fresh["big_tipper"]),
    }
    gate = _gate(_with(taxi, overlap="accept"), accepted_file)
    for feature, frame in cases.items():
        frame.to_csv(tmp_path / f"{feature}.csv", index=False)
        out = gate.process(tmp_path / f"{feature}.csv")
        kinds = {(a.kind, a.feature) for a in out.report.anomalies}
        kind = "LABEL_SHIFT" if feature == "big_tipper" else "DRIFT"
        assert kinds == {(kind, feature)}, out.report.summary()
        qdir = gate.ws.quarantine / out.record.batch_id
        assert (qdir / "drift.png").exists() and (qdir / "drift_shares.json").exists()
        assert "against the accepted history" in out.report.anomalies[0].description
        alert = json.loads((gate.ws.root / "alerts.jsonl").read_text().splitlines()[-1])
        assert alert["batch_id"] == out.record.batch_id and alert["features"] == [feature]
        (moved,) = alert["drift"]  # the score and the threshold at this n, named
        assert moved["feature"] == feature and moved["score"] > moved["threshold"]
        assert alert["reference"].startswith("the accepted history")
        assert "what to do" not in alert and feature in alert["what_to_do"]


def test_the_champion_data_becomes_the_reference(taxi, workspace_factory, tmp_path):
    a, b, c = split_clean(source_of(taxi), taxi, tmp_path / "parts", (0.4, 0.3, 0.3))
    ws = workspace_factory(taxi)
    gate = _gate(taxi, ws)
    first, second = gate.process(a), gate.process(b)
    assert first.accepted and second.accepted
    assert reference_profile(taxi, ws).rows == first.record.rows + second.record.rows
    record_champion(taxi, ws.root.parent, "7", [first.record.batch_id])
    profile = reference_profile(taxi, ws)
    assert profile.rows == first.record.rows and profile.origin.startswith("champion v7")
    out = gate.process(c)
    assert out.accepted and out.report.reference.startswith("champion v7's training data")


def test_the_same_batch_gets_the_same_verdict_on_a_rerun(taxi, accepted_file, tmp_path):
    path = _sample(taxi, tmp_path, 3000)
    first = _gate(taxi, accepted_file).check(_gate(taxi, accepted_file).process(path).record)
    again = _gate(taxi, accepted_file).check(_gate(taxi, accepted_file).process(path).record)
    assert first[0].drift == again[0].drift and first[0].kinds() == again[0].kinds()


def test_spec_migration_and_drift_off_reason(tmp_path, repo_root):
    text = (repo_root / "usecases" / "taxi.yaml").read_text()
    old = tmp_path / "old.yaml"
    old.write_text(text.replace("retrain_drift: 0.1", "drift_threshold: 0.1", 1))
    with pytest.raises(SpecError, match="drift_threshold` was split by use"):
        load_spec(old)
    no_reason = tmp_path / "no_reason.yaml"
    why = "    reason: a calendar feature; a monthly batch holds one month by design\n"
    no_reason.write_text(text.replace(why, "", 1))
    with pytest.raises(SpecError, match="gate_drift: off` needs a `reason`"):
        load_spec(no_reason)


@pytest.mark.heavy
def test_a_dataset_the_repository_does_not_ship(tmp_path):
    """scikit-learn's bundled breast-cancer table (not in ../shared), its spec written by the
    test: one half accepted, the other half an ordinary batch, a unit change caught."""
    from sklearn.datasets import load_breast_cancer

    from mlplatform.spec import UseCase
    from mlplatform.workspace import Workspace

    df = load_breast_cancer(as_frame=True).frame.rename(columns=lambda c: c.replace(" ", "_"))
    numeric = [c for c in df.columns if c != "target"]
    spec = UseCase.model_validate(
        {
            "name": "cancer",
            "source": {"path": "cancer.csv"},
            "label": "target",
            "entity": {"name": "patient", "key": "patient", "derive": "row_number"},
            "split": {"strategy": "random"},
            "selection": {"slice": "overall"},
            "columns": [{"name": c, "type": "float"} for c in numeric]
            + [{"name": "target", "type": "int", "role": "label", "min": 0, "max": 1}],
        }
    )
    order = np.random.default_rng(5).permutation(len(df))
    first, second = df.iloc[np.sort(order[:284])], df.iloc[np.sort(order[284:])]
    for name, part in (("first", first), ("second", second)):
        part.to_csv(tmp_path / f"{name}.csv", index=False)
    second.assign(mean_area=second["mean_area"] / 100).to_csv(tmp_path / "unit.csv", index=False)
    gate = _gate(spec, Workspace.for_usecase(tmp_path / "home", spec.name))
    assert gate.process(tmp_path / "first.csv").accepted
    ordinary = gate.process(tmp_path / "second.csv")
    assert ordinary.accepted, ordinary.report.to_text()
    assert len(ordinary.report.drift) == len(numeric) + 1  # every feature and the label
    moved = gate.process(tmp_path / "unit.csv")
    assert {(a.kind, a.feature) for a in moved.report.anomalies} == {("DRIFT", "mean_area")}
