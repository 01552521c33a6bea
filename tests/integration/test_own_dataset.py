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
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mlplatform.data.catalogue import BatchStatus, Catalogue

from .exports import breast_cancer_csv, project_cli, wine_csv

pytestmark = pytest.mark.integration


def _registration(home: Path, name: str) -> dict:
    return json.loads((home / name / "reports" / "registration.json").read_text())


@dataclass(frozen=True)
class OwnProject:
    """An unshipped dataset after `init` and `run`: where it lives and what the commands said."""

    project: Path
    home: Path
    df: pd.DataFrame
    init_out: str
    run: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def cancer(tmp_path_factory, repo_root) -> OwnProject:
    """The breast-cancer table taken through `init` and `run` once for the tests below."""
    tmp = tmp_path_factory.mktemp("own-cancer")
    project, home = tmp / "project", tmp / "home"
    csv = tmp / "export" / "breast cancer.csv"
    csv.parent.mkdir()
    df = breast_cancer_csv(csv)
    init = project_cli(repo_root, project, "init", "cancer", "--from", str(csv),
                       "--label", "diagnosis", "--positive", "malignant")
    assert init.returncode == 0, init.stderr[-2000:]
    run = project_cli(repo_root, project, "run", "-u", "cancer", "--home", str(home))
    return OwnProject(project, home, df, init.stdout, run)


def test_init_and_run_take_an_unshipped_dataset_to_a_served_challenger(cancer, repo_root):
    project, home, df, run = cancer.project, cancer.home, cancer.df, cancer.run
    assert "next: make run USECASE=cancer" in cancer.init_out
    spec_text = (project / "usecases" / "cancer.yaml").read_text()
    assert "key: Patient ID" in spec_text and "`mean radius`" in spec_text

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


@pytest.fixture(scope="module")
def monitored(cancer, repo_root):
    """v1 made the champion by two people, as production would, and served with its request
    log where `monitor once` reads it; yields (server URL, log folder)."""
    from mlplatform.release import local_stack as ls
    from mlplatform.tracking import tracking_uri
    from mlplatform.workspace import Workspace

    assert cancer.run.returncode == 0, cancer.run.stderr[-2000:]
    home = str(cancer.home)
    for role, user in (("tech-lead", "lee"), ("business-owner", "bo")):
        out = project_cli(repo_root, cancer.project, "approve", "cancer", "1", "--role", role,
                          "--user", user, "--home", home)
        assert out.returncode == 0, out.stdout[-1000:] + out.stderr[-2000:]
    out = project_cli(repo_root, cancer.project, "promote", "cancer", "1", "--user", "lee",
                      "--reason", "first model", "--home", home)
    assert out.returncode == 0, out.stdout[-1000:] + out.stderr[-2000:]
    log_dir = Workspace.locate(cancer.home, "cancer").requests
    p = ls.model_server("monitored", "cancer", "models:/cancer-classifier@champion",
                        tracking_uri(cancer.home), cancer.home,
                        extra_args=["--request-log", str(log_dir)])
    try:
        ls.wait_ready(p, ls.READY["model"])
        yield p.url, log_dir
    finally:
        ls.stop(p)


def _serve(url: str, rows: pd.DataFrame, prefix: str, log_dir: Path, size: int = 25) -> list:
    """POST `rows` in requests of `size` with their own request ids, as a client would; waits
    until the server's buffered request log holds them. Returns (request id, row) per row."""
    from mlplatform.monitoring.requestlog import iter_records

    before = sum(1 for _ in iter_records(log_dir)) if log_dir.is_dir() else 0
    records = json.loads(rows.to_json(orient="records"))
    keys = []
    for k in range(0, len(records), size):
        part, rid = records[k:k + size], f"{prefix}-{k // size}"
        req = urllib.request.Request(
            f"{url}/v1/models/cancer:predict", data=json.dumps({"instances": part}).encode(),
            headers={"Content-Type": "application/json", "x-request-id": rid},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert len(json.loads(resp.read())["predictions"]) == len(part)
        keys += [(rid, i) for i in range(len(part))]
    deadline = time.monotonic() + 30
    while sum(1 for _ in iter_records(log_dir)) < before + len(records):
        assert time.monotonic() < deadline, "the request log never held the posted rows"
        time.sleep(0.5)
    return keys


def _monitor_once(repo_root: Path, own: OwnProject, *args: str) -> subprocess.CompletedProcess:
    return project_cli(repo_root, own.project, "monitor", "once", "-u", "cancer", "--home",
                       str(own.home), "--families", "logistic", "--min-rows", "200", *args)


def _last_verdict(own: OwnProject) -> dict:
    from mlplatform.workspace import Workspace

    folder = Workspace.locate(own.home, "cancer").monitoring / "windows"
    return json.loads(sorted(folder.glob("window-*.json"))[-1].read_text())


def _inputs(own: OwnProject) -> pd.DataFrame:
    """The served model's inputs as a client sends them: no label, no entity key."""
    return own.df.drop(columns=["diagnosis", "Patient ID"])


def test_monitoring_an_unshipped_dataset_flags_only_the_column_that_changed(
    cancer, monitored, repo_root
):
    """The monitoring loop on a dataset the tests did not ship, through the model server's own
    request log: a clean shuffled pass over the data is judged with no drift; a later window
    where one column's unit changed is flagged on that column alone (shown, not acted on: the
    drafted spec sets no `retrain_drift`); a run with nothing new judges nothing twice."""
    from mlplatform.monitoring.watch import WatchState, state_path

    url, log_dir = monitored
    inputs = _inputs(cancer)
    _serve(url, inputs.sample(frac=1.0, random_state=3), "clean", log_dir)
    clean = _monitor_once(repo_root, cancer)
    assert clean.returncode == 0, clean.stdout[-2000:] + clean.stderr[-3000:]
    assert f"{len(inputs)} rows, retrain no" in clean.stdout
    verdict = _last_verdict(cancer)
    assert verdict["judged"] and len(verdict["drift"]) == 31  # 30 measurements + clinic site
    assert [f for f, d in verdict["drift"].items() if d["drifted"]] == []
    assert verdict["confidence"] is not None and verdict["reference_confidence"] is not None

    inches = inputs.sample(300, random_state=4).assign(
        **{"mean radius": lambda d: d["mean radius"] / 2.54}
    )
    _serve(url, inches, "inches", log_dir)
    shifted = _monitor_once(repo_root, cancer)
    assert shifted.returncode == 0, shifted.stdout[-2000:] + shifted.stderr[-3000:]
    assert "300 rows, retrain no" in shifted.stdout
    assert "drifted: mean radius of 31 features" in shifted.stdout
    verdict = _last_verdict(cancer)
    assert [f for f, d in verdict["drift"].items() if d["drifted"]] == ["mean radius"]
    assert not verdict["drift"]["mean radius"]["triggers"] and not verdict["fired"]

    again = _monitor_once(repo_root, cancer)
    assert again.returncode == 0 and "0 rows, retrain no" in again.stdout
    assert WatchState.load(state_path(cancer.home, "cancer")).windows == 2


@pytest.mark.slow
def test_a_monitoring_run_killed_mid_retraining_is_finished_by_the_next_run(
    cancer, monitored, repo_root
):
    """Delayed labels for served requests fire the label trigger; the run is killed (SIGKILL,
    the whole process group, as a node loss would) while the candidate trains. The next run
    judges no row twice, asks for the same retraining again, finishes it and closes the
    trigger exactly once with the gate's outcome."""
    import signal

    from mlplatform.monitoring.triggers import TriggerLog, trigger_log_path
    from mlplatform.monitoring.watch import WatchState, state_path

    url, log_dir = monitored
    keys = _serve(url, _inputs(cancer).sample(400, random_state=5), "labelled", log_dir)
    labels = cancer.home.parent / "labels.jsonl"
    words = cancer.df.loc[_inputs(cancer).sample(400, random_state=5).index, "diagnosis"]
    labels.write_text("".join(
        json.dumps({"request_id": rid, "row": row, "label": label}) + "\n"
        for (rid, row), label in zip(keys, words, strict=True)
    ))
    sent = project_cli(repo_root, cancer.project, "monitor", "labels", str(labels), "-u", "cancer",
                       "--home", str(cancer.home))
    assert sent.returncode == 0, sent.stderr[-2000:]
    state_file = state_path(cancer.home, "cancer")
    windows_before = WatchState.load(state_file).windows

    args = [sys.executable, "-m", "mlplatform.cli", "monitor", "once", "-u", "cancer", "--home",
            str(cancer.home), "--families", "logistic", "--min-rows", "200",
            "--new-labels", "300"]
    env = {**os.environ, "MLPLATFORM_PROJECT": str(cancer.project), "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen(args, cwd=repo_root, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    try:
        for line in run.stdout:
            seen.append(line)
            if "retrain-features" in line and "✓" in line:  # the candidate trains next
                os.killpg(run.pid, signal.SIGKILL)
                break
    finally:
        run.wait(60)
    assert run.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    state = WatchState.load(state_file)
    assert state.windows == windows_before + 1 and [p["reason"] for p in state.pending] == [
        "labels"
    ]
    closed = [r for r in TriggerLog(trigger_log_path(cancer.home, "cancer")).read()
              if r.get("reason") == "labels"]
    assert closed == []

    rerun = project_cli(repo_root, cancer.project, *args[3:])
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "0 rows, retrain yes" in rerun.stdout and "has not finished" in rerun.stdout
    state = WatchState.load(state_file)
    assert state.windows == windows_before + 1 and not state.pending
    (record,) = [r for r in TriggerLog(trigger_log_path(cancer.home, "cancer")).read()
                 if r.get("reason") == "labels"]
    assert record["retrained_version"] == "2" and record["registry_gate"]


def test_a_failed_run_then_a_fixed_run_needs_no_clean_up(tmp_path, repo_root):
    """The spec drafted from a 0/1 export; the real file has the label's own words. The run
    stops at the gate naming the label; init again with --positive; the next run succeeds on
    the same file with nothing deleted by hand."""
    project, home = tmp_path / "project", tmp_path / "home"
    wine_csv(tmp_path / "wine01.csv", "01")
    wine_csv(tmp_path / "wine.csv", "words")
    assert project_cli(repo_root, project, "init", "wine", "--from", str(tmp_path / "wine01.csv"),
                       "--label", "cultivar").returncode == 0
    failed = project_cli(repo_root, project, "run", "-u", "wine", "--home", str(home),
                         "--source", str(tmp_path / "wine.csv"))
    assert failed.returncode == 3, failed.stderr[-2000:]
    assert "cultivar" in failed.stderr and "quarantine show" in failed.stderr

    refused = project_cli(repo_root, project, "init", "wine", "--from", str(tmp_path / "wine.csv"),
                          "--label", "cultivar", "--force")
    assert refused.returncode != 0 and "--positive" in refused.stderr
    fixed = project_cli(repo_root, project, "init", "wine", "--from", str(tmp_path / "wine.csv"),
                        "--label", "cultivar", "--positive", "barolo", "--force")
    assert fixed.returncode == 0, fixed.stderr
    rerun = project_cli(repo_root, project, "run", "-u", "wine", "--home", str(home),
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
    wine_csv(tmp_path / "wine.csv", "words")
    assert project_cli(repo_root, project, "init", "wine", "--from", str(tmp_path / "wine.csv"),
                       "--label", "cultivar", "--positive", "barolo").returncode == 0
    schema = project / "schemas" / "wine.pbtxt"
    spec_file = project / "usecases" / "wine.yaml"
    spec_file.write_text(spec_file.read_text().replace("max_duplicate_fraction: 0.01",
                                                       "max_duplicate_fraction: 0.0"))
    text = spec_file.read_text()
    spec_file.write_text(text.replace("name: ash, type: float", "name: ash, type: int", 1))
    stale = project_cli(repo_root, project, "run", "-u", "wine", "--home", str(home))
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
    init = project_cli(repo_root, project, "init", own, "--from", str(csv), "--label", label,
                       "--positive", words[1])
    assert init.returncode == 0, init.stderr[-2000:]
    run = project_cli(repo_root, project, "run", "-u", own, "--home", str(home))
    assert run.returncode == 0, run.stderr[-3000:]
    reg = _registration(home, own)
    assert reg["alias"] == "challenger" and reg["battery_passed"], reg
    rate = round(float((df[label] == words[1]).mean()), 4)
    assert f"label rate {rate}" in run.stdout
