"""Reading the request log from where the last reader stopped: every complete line once."""

import json

from mlplatform.monitoring.tail import read_new_lines, read_new_records


def _append(path, *items, raw: bytes = b""):
    with open(path, "ab") as fh:
        for item in items:
            fh.write((json.dumps(item) + "\n").encode())
        fh.write(raw)


def test_each_line_is_read_once_and_a_torn_line_waits(tmp_path):
    f = tmp_path / "requests-20260101T000000-1-000001.jsonl"
    _append(f, {"request_id": "a"}, {"request_id": "b"}, raw=b'{"request_id": "c"')
    first = read_new_records(tmp_path, {})
    assert [r["request_id"] for r in first.records] == ["a", "b"]
    # The writer finishes the line: the next read returns it, and only it.
    _append(f, raw=b', "row": 0}\n')
    second = read_new_records(tmp_path, first.offsets)
    assert [r["request_id"] for r in second.records] == ["c"]
    assert read_new_records(tmp_path, second.offsets).records == []


def test_new_files_rotated_files_and_bad_lines_are_reported(tmp_path):
    old = tmp_path / "requests-20260101T000000-1-000001.jsonl"
    _append(old, {"request_id": "a"})
    seen = read_new_records(tmp_path, {})
    old.unlink()  # rotation deleted it
    new = tmp_path / "requests-20260101T000100-1-000002.jsonl"
    _append(new, {"request_id": "b"}, raw=b"not json\n[1, 2]\n")
    out = read_new_records(tmp_path, seen.offsets)
    assert [r["request_id"] for r in out.records] == ["b"]
    assert out.unreadable == 2
    assert out.rotated_away == [old.name]
    assert set(out.offsets) == {new.name}


def test_a_file_replaced_by_a_shorter_one_is_read_from_its_start(tmp_path):
    f = tmp_path / "labels.jsonl"
    _append(f, {"request_id": "a", "label": 1}, {"request_id": "b", "label": 0})
    _, end, _ = read_new_lines(f, 0)
    f.write_text(json.dumps({"request_id": "z", "label": 1}) + "\n")
    records, _, _ = read_new_lines(f, end)
    assert [r["request_id"] for r in records] == ["z"]
    assert read_new_lines(tmp_path / "missing.jsonl", 10) == ([], 0, 0)


def test_per_file_turns_each_files_rows_into_one_item_as_it_is_read(tmp_path):
    """A backlog is handed over file by file (what the watch makes frames of), with the same
    offsets as a plain read; a file with nothing new gives no item."""
    a = tmp_path / "requests-20260101T000000-1-000001.jsonl"
    b = tmp_path / "requests-20260101T000100-1-000002.jsonl"
    _append(a, {"request_id": "a"}, {"request_id": "b"})
    _append(b, {"request_id": "c"})
    plain = read_new_records(tmp_path, {})
    sizes = read_new_records(tmp_path, {}, per_file=len)
    assert sizes.records == [2, 1] and sizes.offsets == plain.offsets
    _append(b, {"request_id": "d"})
    assert read_new_records(tmp_path, plain.offsets, per_file=len).records == [1]
