"""The bad-data corpus at 10x the shipped taxi sample (slow: `make test-slow`)."""

from __future__ import annotations

import pandas as pd
import pytest

from mlplatform.data.catalogue import BatchStatus
from mlplatform.data.corpus import generate_corpus
from mlplatform.data.reading import count_records
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.schema import build_schema

from ..conftest import source_of

pytestmark = pytest.mark.slow


def test_corpus_at_150k_rows(taxi, workspace_factory, tmp_path):
    raw = pd.read_csv(source_of(taxi), dtype={"payment_type": str, "company": str})
    copies = []
    for k in range(10):
        part = raw.copy()
        part["trip_start_timestamp"] += k  # distinct trips, not duplicated rows
        copies.append(part)
    big = tmp_path / "taxi_150k.csv"
    frame = pd.concat(copies, ignore_index=True)
    for c in (
        "pickup_community_area",
        "dropoff_community_area",
        "trip_seconds",
        "pickup_census_tract",
        "dropoff_census_tract",
    ):
        frame[c] = frame[c].astype("Int64")
    frame.to_csv(big, index=False)
    gate = Gate(taxi, build_schema(taxi), workspace_factory(taxi))
    clean = gate.process(big)
    assert clean.accepted, clean.report.to_text()
    for case in generate_corpus(big, taxi, tmp_path / "corpus"):
        out = gate.process(case.path)
        assert out.record.status is BatchStatus.QUARANTINED, case.name
        assert (case.expected_kind, case.expected_feature) in {
            (a.kind, a.feature) for a in out.report.anomalies
        }, case.name
        assert out.quarantined_rows == count_records(case.path, "csv")
