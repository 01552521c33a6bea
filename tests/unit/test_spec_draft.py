"""`mlplatform init` drafts a spec from data no one tuned for: what it infers, what it refuses
with the fix, and that what it writes validates and gates the file it came from."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlplatform.spec import load_spec
from mlplatform.spec_draft import DraftError, draft_spec, render
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.schema import build_schema
from mlplatform.workspace import Workspace


def _frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = 1_420_070_400  # 2015-01-01
    return pd.DataFrame(
        {
            "Customer ID": [f"C{i:05d}" for i in range(n)],
            "signup time": np.sort(rng.integers(start, start + 400 * 86400, n)),
            "capital-gain": np.where(rng.random(n) < 0.2, 0.0, rng.gamma(2, 500, n).round(2)),
            "age": rng.integers(18, 90, n),
            "work class": rng.choice(["private", "state", "self"], n),
            "comment": [f"free text {i}" for i in range(n)],
            "Hours.per week": np.where(rng.random(n) < 0.05, np.nan, rng.integers(1, 80, n)),
            "empty": [None] * n,
            "income": rng.choice(["<=50K", ">50K"], n, p=[0.75, 0.25]),
        }
    )


def _draft(tmp_path, df: pd.DataFrame, label="income", positive=">50K"):
    path = tmp_path / "own.csv"
    df.to_csv(path, index=False)
    d = draft_spec("own", path, label, positive, str(path))
    spec_path = tmp_path / "own.yaml"
    spec_path.write_text(render(d))
    return d, load_spec(spec_path), path


def test_the_draft_infers_types_roles_ranges_and_nulls(tmp_path):
    d, spec, _ = _draft(tmp_path, _frame())
    col = {c.name: c for c in spec.columns}
    assert spec.label == "income" and spec.label_spec.positive == ">50K"
    assert col["income"].categories == ("<=50K", ">50K")
    assert spec.entity.key == "Customer ID" and spec.entity.derive == "column"
    assert col["Customer ID"].role.value == "id"
    assert spec.event_time.column == "signup time" and spec.split.strategy == "time"
    assert spec.slices.recent_period is not None and spec.selection.slice == "recent"
    assert col["capital-gain"].type.value == "float" and col["capital-gain"].min == 0
    assert col["age"].type.value == "int" and col["age"].min <= 18 and col["age"].max >= 89
    assert col["work class"].categories == ("private", "self", "state")
    assert col["comment"].type.value == "string"  # 600 distinct values: free text
    assert 0.05 < col["Hours.per week"].max_null_fraction < 0.15
    assert col["Hours.per week"].type.value == "int"  # integral floats with gaps
    assert col["empty"].role.value == "excluded"
    assert "work class" in spec.slices.segments
    assert [e.where for e in spec.slices.edge_cases][0] == "`capital-gain` == 0"
    assert "age" in d.protected_hints and spec.slices.protected == ()  # suggested, not set
    assert "# protected: [age]" in render(d)


def test_the_draft_gates_its_own_file_and_an_ordinary_second_sample(tmp_path):
    df = _frame(1200, seed=1)
    _, spec, _ = _draft(tmp_path, df.iloc[:600])
    ws = Workspace.for_usecase(tmp_path / "home", spec.name)
    gate = Gate(spec, build_schema(spec), ws)
    first = gate.process(tmp_path / "own.csv")
    assert first.accepted, first.report.to_text()
    later = df.iloc[600:].copy()
    later["signup time"] = later["signup time"].min()  # same period as the draft
    later.to_csv(tmp_path / "second.csv", index=False)
    second = gate.process(tmp_path / "second.csv")
    assert second.accepted, second.report.to_text()


@pytest.mark.parametrize(
    ("values", "positive", "want"),
    [
        ([0, 1] * 50, None, ("int", None)),
        (["True", "False"] * 50, None, ("category", "True")),
        (["yes", "no"] * 50, "yes", ("category", "yes")),
        ([1, 2] * 50, "2", ("category", "2")),
    ],
)
def test_label_forms(tmp_path, values, positive, want):
    df = pd.DataFrame({"x": np.arange(len(values), dtype=float), "y": values})
    _, spec, _ = _draft(tmp_path, df, label="y", positive=positive)
    assert (spec.column("y").type.value, spec.label_spec.positive) == want


def test_refusals_name_the_fix(tmp_path):
    df = pd.DataFrame({"x": np.arange(100.0), "y": ["good", "bad"] * 50})
    df.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DraftError, match=r"classes \['bad', 'good'\].*--positive"):
        draft_spec("d", tmp_path / "d.csv", "y", None, "d.csv")
    with pytest.raises(DraftError, match="--positive 'fine' is not a value"):
        draft_spec("d", tmp_path / "d.csv", "y", "fine", "d.csv")
    with pytest.raises(DraftError, match="--label 'target' is not a column"):
        draft_spec("d", tmp_path / "d.csv", "target", None, "d.csv")
    df.assign(y="good").to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(DraftError, match="needs two"):
        draft_spec("d", tmp_path / "one.csv", "y", "good", "one.csv")


@pytest.mark.heavy
def test_cli_init_writes_spec_and_schema_into_the_project(tmp_path, repo_root):
    project = tmp_path / "project"
    _frame(300).to_csv(tmp_path / "own.csv", index=False)
    env = {**os.environ, "MLPLATFORM_PROJECT": str(project)}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "mlplatform.cli", *args],
            capture_output=True, text=True, cwd=repo_root, env=env, timeout=300,
        )

    out = cli("init", "own", "--from", str(tmp_path / "own.csv"), "--label", "income")
    assert out.returncode != 0 and "--positive" in out.stderr
    assert not (project / "usecases" / "own.yaml").exists()
    out = cli("init", "own", "--from", str(tmp_path / "own.csv"), "--label", "income",
              "--positive", ">50K")
    assert out.returncode == 0, out.stderr
    assert "next: make run USECASE=own" in out.stdout
    assert (project / "schemas" / "own.pbtxt").exists()
    again = cli("init", "own", "--from", str(tmp_path / "own.csv"), "--label", "income",
                "--positive", ">50K")
    assert again.returncode != 0 and "--force" in again.stderr
    check = cli("schema", "build", "-u", "own", "--check")
    assert check.returncode == 0, check.stderr
    spec_file = project / "usecases" / "own.yaml"
    text = spec_file.read_text()
    assert "[private, self, state]" in text
    spec_file.write_text(text.replace("[private, self, state]", "[private, self]"))
    check = cli("schema", "build", "-u", "own", "--check")
    assert check.returncode == 1 and '-    value: "state"' in check.stdout
    assert "schema build -u own" in check.stderr
