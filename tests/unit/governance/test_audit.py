"""The audit trail: hash chain over JSON lines; any edited, removed or reordered record is
named by its line."""

from __future__ import annotations

import json

import pytest

from mlplatform.governance.audit import AuditTrail, audit_path


@pytest.fixture
def trail(tmp_path) -> AuditTrail:
    t = AuditTrail(audit_path(tmp_path, "taxi"))
    t.append("approval", "alice", version="3", role="tech-lead")
    t.append("approval", "bob", version="3", role="business-owner")
    t.append("promotion", "alice", version="3")
    t.append("rollback", "carol", version="2", rolled_back="3")
    return t


def _lines(t: AuditTrail) -> list[str]:
    return t.path.read_text().splitlines()


def _write(t: AuditTrail, lines: list[str]) -> None:
    t.path.write_text("\n".join(lines) + "\n")


def test_trail_lives_under_home_and_chains(tmp_path, trail):
    assert trail.path == (tmp_path / "governance" / "taxi" / "audit.jsonl").resolve()
    recs = trail.records()
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]
    assert all(b["prev"] == a["hash"] for a, b in zip(recs, recs[1:], strict=False))
    result = trail.verify(anchor=f"4:{recs[-1]['hash']}")
    assert result.ok and result.records == 4 and result.head == f"4:{recs[-1]['hash']}"


def test_edited_record_is_named_by_line(trail):
    lines = _lines(trail)
    rec = json.loads(lines[1])
    rec["actor"] = "alice"  # the business owner's approval rewritten to the tech lead
    lines[1] = json.dumps(rec, sort_keys=True)
    _write(trail, lines)
    result = trail.verify()
    assert not result.ok
    assert result.problems == [
        "line 2: record 2 (approval) was edited: its content does not match its hash"
    ]


def test_edited_record_with_recomputed_hash_breaks_the_next_link(trail):
    from mlplatform.governance.audit import record_hash

    lines = _lines(trail)
    rec = json.loads(lines[1])
    rec["actor"] = "mallory"
    rec["hash"] = record_hash(rec)
    lines[1] = json.dumps(rec, sort_keys=True)
    _write(trail, lines)
    problems = trail.verify().problems
    assert len(problems) == 1 and problems[0].startswith("line 3: record 3 does not follow")


def test_removed_record_is_detected(trail):
    lines = _lines(trail)
    del lines[1]
    _write(trail, lines)
    problems = trail.verify().problems
    assert any(p.startswith("line 2: record 3 does not follow") for p in problems)
    assert any("sequence number 3 where 2 was expected" in p for p in problems)


def test_reordered_records_are_detected(trail):
    lines = _lines(trail)
    lines[1], lines[2] = lines[2], lines[1]
    _write(trail, lines)
    problems = trail.verify().problems
    assert problems and problems[0].startswith("line 2:")


def test_truncated_tail_is_caught_by_the_anchor(trail):
    head = trail.verify().head
    lines = _lines(trail)
    _write(trail, lines[:2])  # a valid chain of two: only the anchor knows there were four
    assert trail.verify().ok
    result = trail.verify(anchor=head)
    assert not result.ok
    assert "ends at record 2 but the registry anchor names record 4" in result.problems[0]


def test_rewritten_chain_differs_from_anchor(tmp_path, trail):
    head = trail.verify().head
    forged = AuditTrail(tmp_path / "forged.jsonl")
    for r in trail.records():
        forged.append(r["event"], "mallory", version=r["version"])
    forged.path.replace(trail.path)
    assert trail.verify().ok  # internally consistent...
    assert "differs from the registry anchor" in trail.verify(anchor=head).problems[0]


def test_garbage_line_is_named(trail):
    lines = _lines(trail)
    lines.insert(2, "not json")
    _write(trail, lines)
    assert "line 3: not a JSON record" in trail.verify().problems[0]


def test_unknown_event_refused(trail):
    with pytest.raises(ValueError, match="unknown audit event 'delete'"):
        trail.append("delete", "mallory")
