"""The small library helpers the notebooks call: sampling a batch, family parameter
overrides, and the v2 request body a client sends."""

from __future__ import annotations

import csv

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplatform.data.sampling import sample_batch
from mlplatform.serving.contract import Contract, ContractError, Field
from mlplatform.training.run import train_candidate


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
