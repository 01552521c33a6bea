"""A dataset the repository does not ship, taken from a CSV to a served challenger with two
commands (`mlplatform init`, `mlplatform run`, which `make run` calls) and no hand edits:
string labels, headers with spaces, hyphens, dots, slashes and leading digits; a failed run
followed by a fixed one needs no clean-up. Data: tables scikit-learn ships in its wheel,
written to CSV by the test the way an export would be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlplatform.data.catalogue import BatchStatus, Catalogue

pytestmark = pytest.mark.integration


def _cli(repo_root: Path, project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLPLATFORM_PROJECT": str(project)}
    return subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", *args],
        capture_output=True, text=True, cwd=repo_root, env=env, timeout=1200,
    )


def _breast_cancer_csv(path: Path) -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    df = load_breast_cancer(as_frame=True).frame  # headers like "mean radius"
    rng = np.random.default_rng(7)
    df.insert(0, "Patient ID", [f"P-{i:04d}" for i in rng.permutation(len(df))])
    df.insert(1, "clinic site", rng.choice(["North-1", "South 2", "east.3"], len(df)))
    df["diagnosis"] = df.pop("target").map({0: "malignant", 1: "benign"})
    df.to_csv(path, index=False)
    return df


def _wine_csv(path: Path, labels: str) -> pd.DataFrame:
    from sklearn.datasets import load_wine

    df = load_wine(as_frame=True).frame.rename(
        columns={
            "alcohol": "Alcohol %",
            "malic_acid": "malic-acid",
            "od280/od315_of_diluted_wines": "od280/od315 of diluted wines",
            "proline": "1st.proline",
        }
    )
    target = df.pop("target")
    df["cultivar"] = (target == 0).astype(int) if labels == "01" else target.map(
        {0: "barolo", 1: "grignolino", 2: "barbera"}
    )
    df.to_csv(path, index=False)
    return df


def _registration(home: Path, name: str) -> dict:
    return json.loads((home / name / "reports" / "registration.json").read_text())


def test_init_and_run_take_an_unshipped_dataset_to_a_served_challenger(tmp_path, repo_root):
    project, home = tmp_path / "project", tmp_path / "home"
    csv = tmp_path / "export" / "breast cancer.csv"
    csv.parent.mkdir()
    df = _breast_cancer_csv(csv)

    out = _cli(repo_root, project, "init", "cancer", "--from", str(csv), "--label", "diagnosis",
               "--positive", "malignant")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "next: make run USECASE=cancer" in out.stdout
    spec_text = (project / "usecases" / "cancer.yaml").read_text()
    assert "key: Patient ID" in spec_text and "`mean radius`" in spec_text

    run = _cli(repo_root, project, "run", "-u", "cancer", "--home", str(home))
    assert run.returncode == 0, run.stderr[-3000:]
    reg = _registration(home, "cancer")
    assert reg["alias"] == "challenger" and reg["battery_passed"], reg
    assert f"{len(df)} rows, label rate {round((df['diagnosis'] == 'malignant').mean(), 4)}" \
        in run.stdout  # 1 = malignant, applied where the training set is built

    import mlflow

    from mlplatform.release import local_stack as ls
    from mlplatform.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(home))
    uri = "models:/cancer-classifier@challenger"
    model = mlflow.pyfunc.load_model(uri)
    rows = json.loads(model.input_example.to_json(orient="records"))
    assert "mean radius" in rows[0] and "clinic site" in rows[0]
    p = ls.model_server("server", "cancer", uri, tracking_uri(home), home)
    try:
        ls.wait_ready(p, ls.READY["model"])
        body = json.dumps({"instances": rows}).encode()
        req = urllib.request.Request(f"{p.url}/v1/models/cancer:predict", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            served = json.loads(resp.read())["predictions"]
        inputs = [
            {"name": k, "shape": [len(rows)],
             "datatype": "BYTES" if isinstance(rows[0][k], str) else "FP64",
             "data": [r[k] for r in rows]}
            for k in rows[0]
        ]
        req = urllib.request.Request(f"{p.url}/v2/models/cancer/infer",
                                     data=json.dumps({"inputs": inputs}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            v2 = {o["name"]: o["data"] for o in json.loads(resp.read())["outputs"]}
    finally:
        ls.stop(p)
    for item in served:
        assert item["class"] == ("malignant" if item["prediction"] == 1 else "benign")
    assert v2["class"] == [i["class"] for i in served]


def test_a_failed_run_then_a_fixed_run_needs_no_clean_up(tmp_path, repo_root):
    """The spec drafted from a 0/1 export; the real file has the label's own words. The run
    stops at the gate naming the label; init again with --positive; the next run succeeds on
    the same file with nothing deleted by hand."""
    project, home = tmp_path / "project", tmp_path / "home"
    _wine_csv(tmp_path / "wine01.csv", "01")
    _wine_csv(tmp_path / "wine.csv", "words")
    assert _cli(repo_root, project, "init", "wine", "--from", str(tmp_path / "wine01.csv"),
                "--label", "cultivar").returncode == 0
    failed = _cli(repo_root, project, "run", "-u", "wine", "--home", str(home),
                  "--source", str(tmp_path / "wine.csv"))
    assert failed.returncode == 3, failed.stderr[-2000:]
    assert "cultivar" in failed.stderr and "quarantine show" in failed.stderr

    refused = _cli(repo_root, project, "init", "wine", "--from", str(tmp_path / "wine.csv"),
                   "--label", "cultivar", "--force")
    assert refused.returncode != 0 and "--positive" in refused.stderr
    fixed = _cli(repo_root, project, "init", "wine", "--from", str(tmp_path / "wine.csv"),
                 "--label", "cultivar", "--positive", "barolo", "--force")
    assert fixed.returncode == 0, fixed.stderr
    rerun = _cli(repo_root, project, "run", "-u", "wine", "--home", str(home),
                 "--source", str(tmp_path / "wine.csv"))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _registration(home, "wine")["alias"] == "challenger"
    cat = Catalogue(home / "wine" / "catalogue.db")
    (batch,) = cat.list("wine")
    assert batch.status is BatchStatus.ACCEPTED
    assert [e["event"] for e in cat.events(batch.batch_id)] == [
        "ingested", "quarantined", "reopened", "accepted"
    ]


def test_run_builds_a_missing_schema_and_refuses_a_stale_one(tmp_path, repo_root):
    project, home = tmp_path / "project", tmp_path / "home"
    _wine_csv(tmp_path / "wine.csv", "words")
    assert _cli(repo_root, project, "init", "wine", "--from", str(tmp_path / "wine.csv"),
                "--label", "cultivar", "--positive", "barolo").returncode == 0
    schema = project / "schemas" / "wine.pbtxt"
    spec_file = project / "usecases" / "wine.yaml"
    spec_file.write_text(spec_file.read_text().replace("max_duplicate_fraction: 0.01",
                                                       "max_duplicate_fraction: 0.0"))
    text = spec_file.read_text()
    spec_file.write_text(text.replace("name: ash, type: float", "name: ash, type: int", 1))
    stale = _cli(repo_root, project, "run", "-u", "wine", "--home", str(home))
    assert stale.returncode != 0 and "schema build -u wine --check" in stale.stderr
    assert not (home / "wine" / "catalogue.db").exists()  # refused before anything ran
    spec_file.write_text(text)
    schema.unlink()
    from mlplatform.spec import load_spec
    from mlplatform.validation.schema import ensure_schema

    assert ensure_schema(load_spec(spec_file), project) == "built" and schema.exists()
    assert ensure_schema(load_spec(spec_file), project) == "current"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "label", "words"),
    [("taxi", "big_tipper", {1: "big tip", 0: "small tip"}),
     ("credit", "target", {1: "default", 0: "paid"})],
)
def test_the_shipped_tables_with_string_labels_through_init(
    tmp_path, repo_root, shared_data, name, label, words
):
    """taxi and credit as a stranger would bring them: labels in words, no spec but init's."""
    from mlplatform.spec import load_usecase

    source = (repo_root / load_usecase(name).source.path).resolve()
    df = pd.read_csv(source)
    df[label] = df[label].map(words)
    csv = tmp_path / f"{name} export.csv"
    df.to_csv(csv, index=False)
    project, home = tmp_path / "project", tmp_path / "home"
    own = f"{name}_words"
    init = _cli(repo_root, project, "init", own, "--from", str(csv), "--label", label,
                "--positive", words[1])
    assert init.returncode == 0, init.stderr[-2000:]
    run = _cli(repo_root, project, "run", "-u", own, "--home", str(home))
    assert run.returncode == 0, run.stderr[-3000:]
    reg = _registration(home, own)
    assert reg["alias"] == "challenger" and reg["battery_passed"], reg
    rate = round(float((df[label] == words[1]).mean()), 4)
    assert f"label rate {rate}" in run.stdout
