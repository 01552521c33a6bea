"""The small library helpers the notebooks call: sampling a batch, family parameter
overrides, the v2 request body a client sends, rows logged one request each, and calendar
windows of the request log."""

from __future__ import annotations

import csv

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplatform.data.sampling import sample_batch
from mlplatform.jobs.models import train_candidate
from mlplatform.monitoring.requestlog import RequestLog, RequestLogConfig, record_each_row
from mlplatform.monitoring.windows import by_period, read_log
from mlplatform.packaging.contract import Contract, ContractError, Field


def _csv(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["id", "fare", "note"])
        w.writerows([i, f"{i}.50", "multi\nline" if i == 3 else ""] for i in range(rows))
    return path


def test_sample_keeps_whole_rows_exactly_and_in_order(tmp_path):
    src = _csv(tmp_path / "batch.csv", 50)
    out = sample_batch(src, tmp_path / "samples", 10, seed=3)
    with open(src, newline="") as fh:
        original = list(csv.reader(fh))
    with open(out, newline="") as fh:
        sample = list(csv.reader(fh))
    assert out.suffix == ".csv" and out.parent == tmp_path / "samples"
    assert sample[0] == original[0] and len(sample) == 11
    assert all(row in original[1:] for row in sample[1:])  # "1.50" stays "1.50"
    ids = [int(r[0]) for r in sample[1:]]
    assert ids == sorted(ids)
    assert sample_batch(src, tmp_path / "again", 10, seed=3).read_bytes() == out.read_bytes()
    assert sample_batch(src, tmp_path / "other", 10, seed=4).read_bytes() != out.read_bytes()


def test_sample_of_none_or_more_rows_is_the_file_itself(tmp_path):
    src = _csv(tmp_path / "batch.csv", 5)
    assert sample_batch(src, tmp_path / "s", None) == src
    assert sample_batch(src, tmp_path / "s", 5) == src
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="rows must be >= 1"):
        sample_batch(src, tmp_path / "s", 0)


def test_sample_of_parquet_is_parquet(tmp_path):
    src = tmp_path / "batch.parquet"
    pq.write_table(pa.table({"id": list(range(20)), "x": [i / 2 for i in range(20)]}), src)
    out = sample_batch(src, tmp_path / "s", 7, seed=1)
    table = pq.read_table(out)
    assert out.suffix == ".parquet" and table.num_rows == 7
    assert table.column("id").to_pylist() == sorted(table.column("id").to_pylist())


def test_unknown_family_parameter_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown keras parameter\(s\) \['epoch'\].*epochs"):
        train_candidate("taxi", "keras", tmp_path / "none.parquet", tmp_path, {"epoch": 3})


def test_v2_request_is_what_the_server_parses():
    contract = Contract((Field("fare", "double"), Field("payment_type", "string")))
    rows = [{"fare": 12, "payment_type": "Cash"}, {"fare": None, "payment_type": "Credit Card"}]
    body = contract.v2_request(rows, request_id="r1")
    assert body["id"] == "r1"
    assert [(t["name"], t["datatype"], t["shape"]) for t in body["inputs"]] == [
        ("fare", "FP64", [2]),
        ("payment_type", "BYTES", [2]),
    ]
    frame = contract.parse_v2([(t["name"], t["datatype"], t["data"]) for t in body["inputs"]])
    assert frame["fare"].iloc[0] == 12.0 and frame["fare"].isna().iloc[1]
    assert frame["payment_type"].tolist() == ["Cash", "Credit Card"]
    with pytest.raises(ContractError):
        contract.v2_request([])


def test_each_row_is_logged_as_its_own_request(tmp_path):
    log = RequestLog(RequestLogConfig(tmp_path, sample_rate=0.01), seed=0)
    rows = [{"fare": 5.0}, {"fare": float("nan")}, {"fare": 7.5}]
    ts = [1420070400.0, 1427846400.0, 1427846401.0]  # 2015-01-01, 2015-04-01 (UTC)
    n = record_each_row(
        log, "taxi", "taxi-classifier/2", rows, [0.1, 0.6, 0.9], [0, 1, 1], ["a", "b", "c"], ts
    )
    log.close()
    df = read_log(tmp_path)
    assert n == 3 and list(df["request_id"]) == ["a", "b", "c"]  # kept whatever the sampling
    assert list(df["row"]) == [0, 0, 0] and list(df["prediction"]) == [0, 1, 1]
    assert df["fare"].isna().tolist() == [False, True, False] and list(df["ts"]) == ts
    with pytest.raises(ValueError, match="differ in length"):
        record_each_row(log, "taxi", "v", rows, [0.1], [0], ["a"], [0.0])


def test_calendar_windows_of_the_log_follow_utc():
    df = pd.DataFrame({"ts": [1443657599.0, 1443657600.0, 1420070400.0], "x": [1, 2, 3]})
    quarters = by_period(df, "Q")  # 2015-09-30 23:59:59, 2015-10-01 00:00:00, 2015-01-01 UTC
    assert [w for w, _ in quarters] == ["2015Q1", "2015Q3", "2015Q4"]
    assert [part["x"].tolist() for _, part in quarters] == [[3], [1], [2]]
    assert [w for w, _ in by_period(df, "M")] == ["2015-01", "2015-09", "2015-10"]
