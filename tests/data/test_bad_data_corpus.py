"""Every kind of bad batch is quarantined whole, with its own anomaly named; nothing is lost."""

from __future__ import annotations

import pytest

from mlplatform.data.catalogue import BatchStatus
from mlplatform.data.corpus import generate_corpus, split_clean
from mlplatform.data.reading import count_records
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.schema import build_schema

from ..conftest import source_of


@pytest.fixture(scope="module", params=["taxi", "credit"])
def judged(request, tmp_path_factory, shared_data):
    """A random half of the clean file accepted, then a second ordinary quarter, then every
    corpus case derived from the last quarter (rows the catalogue has not seen)."""
    from mlplatform.spec import load_spec
    from mlplatform.workspace import REPO_ROOT, Workspace

    spec = load_spec(REPO_ROOT / "usecases" / f"{request.param}.yaml")
    root = tmp_path_factory.mktemp(spec.name)
    ws = Workspace.for_usecase(root / "home", spec.name)
    gate = Gate(spec, build_schema(spec), ws)
    first, second, rest = split_clean(source_of(spec), spec, root / "parts", (0.5, 0.25, 0.25))
    clean = gate.process(first)
    ordinary = gate.process(second)
    cases = generate_corpus(rest, spec, root / "corpus", accepted=first)
    return spec, gate, (first, clean, ordinary), [(c, gate.process(c.path)) for c in cases]


def test_clean_batches_pass(judged):
    spec, _, (first, clean, ordinary), _ = judged
    assert clean.record.status is BatchStatus.ACCEPTED, clean.report.to_text()
    assert clean.accepted_rows == count_records(first, "csv")
    assert clean.report.reference is None  # the first batch: nothing to compare with
    # The second batch is judged against the first, on every feature and the label.
    assert ordinary.accepted, ordinary.report.to_text()
    assert ordinary.report.reference.startswith("the accepted history (1 batch,")
    judged_columns = {d["feature"] for d in ordinary.report.drift}
    assert judged_columns == set(spec.gate_thresholds())


def test_corpus_covers_required_cases(judged):
    spec, _, _, results = judged
    names = {c.name for c, _ in results}
    required = {
        "renamed_column",
        "missing_column",
        "string_in_numeric",
        "unit_change_x10",
        "null_burst",
        "unseen_category",
        "out_of_range",
        "empty_file",
        "truncated",
        "duplicated_rows",
        "leakage_column",
        "in_range_unit_change",
        "category_share_shift",
        "label_rate_shift",
        "resent_content",
    }
    if spec.event_time.column:
        required.add("future_timestamps")
    assert required <= names


def test_each_bad_batch_is_quarantined_with_its_anomaly(judged):
    _, _, _, results = judged
    for case, out in results:
        assert out.record.status is BatchStatus.QUARANTINED, f"{case.name} was accepted"
        found = {(a.kind, a.feature) for a in out.report.anomalies}
        assert (case.expected_kind, case.expected_feature) in found, (
            f"{case.name}: expected {case.expected_kind} on {case.expected_feature!r}, "
            f"got {sorted(found)}"
        )
        extra = out.report.kinds() - case.allowed_kinds
        assert not extra, f"{case.name}: unrelated anomalies {extra}: {out.report.summary()}"


def test_rows_are_accounted_for(judged):
    _, _, _, results = judged
    for case, out in results:
        assert out.accepted_rows + out.quarantined_rows == count_records(case.path, "csv")
        assert out.accepted_rows == 0  # quarantined whole, never in part


def test_quarantine_keeps_bytes_and_reports(judged):
    _, gate, _, results = judged
    for case, out in results:
        qdir = gate.ws.quarantine / out.record.batch_id
        kept = next(qdir.glob("batch.*"))
        assert kept.read_bytes() == case.path.read_bytes(), case.name
        assert (qdir / "anomalies.json").exists() and (qdir / "anomalies.txt").exists()
        text = (qdir / "anomalies.txt").read_text()
        assert "what to do" in text


def test_alert_raised_per_quarantine(judged):
    import json

    spec, gate, _, results = judged
    alerts = [json.loads(x) for x in (gate.ws.root / "alerts.jsonl").read_text().splitlines()]
    ids = {a["batch_id"] for a in alerts if a["kind"] == "batch_quarantined"}
    assert {out.record.batch_id for _, out in results} <= ids
