"""Labels in their own vocabulary and column names that are not identifiers, as a user writes
them: the spec refuses what cannot work with the fix, the encoder maps what can, the gate
names a label value outside the declared classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlplatform.data.labels import LabelError, class_names, decode_predictions, encode_labels
from mlplatform.evaluation.slicing import edge_mask
from mlplatform.spec import Label, SpecError, UseCase, load_spec, quote_name
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.schema import build_schema
from mlplatform.workspace import Workspace


def _spec(label, label_col: dict, extra_cols=(), edge_cases=()) -> UseCase:
    return UseCase.model_validate(
        {
            "name": "own",
            "source": {"path": "own.csv"},
            "label": label,
            "entity": {"name": "row", "key": "row_id", "derive": "row_number"},
            "split": {"strategy": "random"},
            "selection": {"slice": "overall"},
            "columns": [
                {"name": "capital-gain", "type": "float", "min": 0, "max": 1e6},
                {"name": "1st.score", "type": "int", "min": 0, "max": 100},
                *extra_cols,
                {"name": "income", "role": "label", **label_col},
            ],
            "slices": {"edge_cases": list(edge_cases)},
        }
    )


INCOME = {"type": "category", "categories": ["<=50K", ">50K"]}


def test_a_named_positive_class_maps_to_one_and_the_rest_to_zero():
    spec = _spec({"column": "income", "positive": ">50K"}, INCOME)
    y = encode_labels(spec.label_spec, pd.Series([">50K", "<=50K", None, ">50K"]))
    assert y.tolist()[:2] == [1, 0] and pd.isna(y.iloc[2]) and y.iloc[3] == 1
    assert class_names(spec) == ("<=50K", ">50K")
    assert decode_predictions(spec, np.array([1, 0])).tolist() == [">50K", "<=50K"]


def test_zero_one_and_true_false_labels_keep_working():
    label = Label(column="y")
    assert encode_labels(label, pd.Series([0, 1, 1])).tolist() == [0, 1, 1]
    assert encode_labels(label, pd.Series([True, False])).tolist() == [1, 0]
    assert encode_labels(label, pd.Series(["True", "false", " 1 "])).tolist() == [1, 0, 1]
    with pytest.raises(LabelError, match=r"'bad'.*positive: <value>"):
        encode_labels(label, pd.Series(["good", "bad"]))
    spec = _spec("income", {"type": "int", "min": 0, "max": 1})
    assert class_names(spec) == ("0", "1")


def test_the_short_and_long_label_forms_hash_alike():
    short = _spec("income", {"type": "int", "min": 0, "max": 1})
    long = _spec({"column": "income"}, {"type": "int", "min": 0, "max": 1})
    assert short.spec_hash() == long.spec_hash() and short.label == long.label == "income"
    named = _spec({"column": "income", "positive": ">50K"}, INCOME)
    assert named.spec_hash() != short.spec_hash()


def test_the_spec_refuses_labels_it_cannot_map(tmp_path):
    with pytest.raises(ValueError, match=r"classes \['<=50K', '>50K'\]: name the positive"):
        _spec("income", INCOME)
    with pytest.raises(ValueError, match="not among"):
        _spec({"column": "income", "positive": "rich"}, INCOME)
    with pytest.raises(ValueError, match="needs min: 0 and max: 1"):
        _spec("income", {"type": "int"})
    path = tmp_path / "own.yaml"
    text = (
        "name: own\nsource: {path: own.csv}\nlabel: {column: y, positive: yes}\n"
        "entity: {name: r, key: r, derive: row_number}\nsplit: {strategy: random}\n"
        "selection: {slice: overall}\ncolumns:\n  - {name: x, type: float}\n"
        "  - {name: y, type: category, role: label, categories: ['yes', 'no']}\n"
    )
    path.write_text(text)
    with pytest.raises(SpecError, match=r"label .*line 3.*YAML boolean; quote it"):
        load_spec(path)
    path.write_text(text.replace("positive: yes", "positive: 'yes'"))
    assert load_spec(path).label_spec.positive == "yes"


def test_edge_cases_quote_awkward_names_in_backticks():
    spec = _spec(
        "income",
        {"type": "int", "min": 0, "max": 1},
        edge_cases=[{"name": "gains", "where": "`capital-gain` > 0 and `1st.score` < 50"}],
    )
    df = pd.DataFrame({"capital-gain": [0.0, 10.0, 10.0], "1st.score": [1, 20, 70]})
    assert edge_mask(df, spec.slices.edge_cases[0]).tolist() == [False, True, False]
    with pytest.raises(ValueError, match="unknown column 'capital'"):
        _spec("income", {"type": "int", "min": 0, "max": 1},
              edge_cases=[{"name": "bare", "where": "capital-gain > 0"}])
    with pytest.raises(ValueError, match="unclosed backtick"):
        _spec("income", {"type": "int", "min": 0, "max": 1},
              edge_cases=[{"name": "open", "where": "`capital-gain > 0"}])
    assert quote_name("capital-gain") == "`capital-gain`" and quote_name("age") == "age"
    assert quote_name("class") == "`class`"  # a Python keyword cannot stand bare either


def test_the_gate_names_a_label_value_outside_the_declared_classes(tmp_path):
    spec = _spec({"column": "income", "positive": ">50K"}, INCOME)
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame(
        {
            "capital-gain": rng.uniform(0, 1000, n).round(2),
            "1st.score": rng.integers(0, 100, n),
            "income": rng.choice(["<=50K", ">50K"], n),
        }
    )
    df.to_csv(tmp_path / "first.csv", index=False)
    gate = Gate(spec, build_schema(spec), Workspace.for_usecase(tmp_path / "home", spec.name))
    assert gate.process(tmp_path / "first.csv").accepted
    bad = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    bad.loc[:40, "income"] = ">50K."  # the test file of the Adult data spells it this way
    bad.to_csv(tmp_path / "second.csv", index=False)
    out = gate.process(tmp_path / "second.csv")
    assert not out.accepted
    kinds = {(a.kind, a.feature) for a in out.report.anomalies}
    assert any(f == "income" for _, f in kinds), kinds
    assert ">50K." in out.report.to_text()


def test_a_batch_quarantined_under_a_wrong_spec_is_judged_again_once_it_is_fixed(tmp_path):
    """The first user's story: string labels under a 0/1 spec are refused; after the spec
    names the positive class, the same file is accepted on the next run, no clean-up."""
    from mlplatform.data.catalogue import BatchStatus
    from mlplatform.features.store import FeatureRepo

    rng = np.random.default_rng(3)
    n = 300
    pd.DataFrame(
        {
            "capital-gain": rng.uniform(0, 1000, n).round(2),
            "1st.score": rng.integers(0, 100, n),
            "income": rng.choice(["<=50K", ">50K"], n),
        }
    ).to_csv(tmp_path / "adult.csv", index=False)
    ws = Workspace.for_usecase(tmp_path / "home", "own")
    wrong = _spec("income", {"type": "int", "min": 0, "max": 1})
    first = Gate(wrong, build_schema(wrong), ws).process(tmp_path / "adult.csv")
    assert not first.accepted and first.record.status is BatchStatus.QUARANTINED
    again = Gate(wrong, build_schema(wrong), ws).process(tmp_path / "adult.csv")
    assert again.record.status is BatchStatus.QUARANTINED  # same rules: same verdict

    fixed = _spec({"column": "income", "positive": ">50K"}, INCOME)
    gate = Gate(fixed, build_schema(fixed), ws)
    out = gate.judge(first.record.batch_id)
    assert out.accepted, out.report.to_text()
    assert not (ws.quarantine / first.record.batch_id).exists()
    kept = list(ws.batch_dir(first.record.batch_id).glob("superseded_quarantine_*"))
    assert len(kept) == 1 and (kept[0] / "anomalies.txt").exists()
    events = [e["event"] for e in gate.cat.events(first.record.batch_id)]
    assert events == ["ingested", "quarantined", "reopened", "accepted"]
    _, frames = FeatureRepo(fixed, ws)._usable_frames()
    assert set(frames[0]["income"].unique()) == {0, 1}


def test_rows_without_a_label_build_features_but_never_train(tmp_path):
    from mlplatform.features.store import FeatureRepo

    income = {**INCOME, "max_null_fraction": 0.2}
    spec = _spec({"column": "income", "positive": ">50K"}, income)
    rng = np.random.default_rng(4)
    n = 200
    labels = rng.choice(["<=50K", ">50K"], n).astype(object)
    labels[:15] = None
    pd.DataFrame(
        {"capital-gain": rng.uniform(0, 10, n), "1st.score": rng.integers(0, 100, n),
         "income": labels}
    ).to_csv(tmp_path / "part.csv", index=False)
    ws = Workspace.for_usecase(tmp_path / "home", spec.name)
    assert Gate(spec, build_schema(spec), ws).process(tmp_path / "part.csv").accepted
    repo = FeatureRepo(spec, ws)
    _, frames = repo._usable_frames()
    assert len(frames[0]) == n
    entities = repo.entity_frame()
    assert len(entities) == n - 15 and set(entities["income"]) == {0, 1}
