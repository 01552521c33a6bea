"""Pure governance rules: identity, the two-person check, reproduction comparison, card HTML."""

from __future__ import annotations

import getpass

import pytest

from mlplatform.governance.approvals import approval_problems, resolve_user
from mlplatform.governance.cards import to_html
from mlplatform.governance.reproduction import Reproduction, compare


def test_identity_from_option_then_environment_then_os(monkeypatch):
    monkeypatch.setenv("MLPLATFORM_USER", "bob")
    assert resolve_user("alice") == "alice"
    assert resolve_user(None) == "bob"
    monkeypatch.delenv("MLPLATFORM_USER")
    assert resolve_user(None) == getpass.getuser()


def _rec(actor: str) -> dict:
    return {"actor": actor}


def test_two_person_rule():
    assert approval_problems({}, "3") == ["v3 lacks the tech-lead and business-owner approval"]
    assert approval_problems({"tech-lead": _rec("alice")}, "3") == [
        "v3 lacks the business-owner approval"
    ]
    same = {"tech-lead": _rec("alice"), "business-owner": _rec("alice")}
    assert approval_problems(same, "3") == [
        "alice approved v3 in both roles: two different people must"
    ]
    assert approval_problems({"tech-lead": _rec("a"), "business-owner": _rec("b")}, "3") == []


def test_reproduction_within_tolerance_and_mismatch():
    recorded = {"auc_overall": 0.8712, "auc_recent": 0.9051, "serving_single_p99_ms": 2.0}
    params = {"param_C": "1.0", "seed": "42"}
    checks, diffs = compare(
        recorded,
        {"auc_overall": 0.8712, "auc_recent": 0.9055, "serving_single_p99_ms": 9.0},
        params,
        dict(params),
    )
    assert [c.name for c in checks] == ["auc_overall", "auc_recent"]  # latency is not quality
    ok = Reproduction("3", "run", 0.001, checks, diffs)
    assert ok.ok and "reproduced within tolerance" in ok.to_text()
    checks, diffs = compare(
        recorded, {"auc_overall": 0.80, "auc_recent": 0.9051}, params, {**params, "seed": "7"}
    )
    bad = Reproduction("3", "run", 0.001, checks, diffs)
    assert not bad.ok
    text = bad.to_text()
    assert "auc_overall  recorded 0.871200  reproduced 0.800000" in text and "MISMATCH" in text
    assert "param seed: recorded '42', reproduced '7'  MISMATCH" in text
    missing, _ = compare(recorded, {}, {}, {})
    assert not Reproduction("3", "run", 0.001, missing, []).ok


def test_card_html_renders_tables_and_escapes_title():
    page = to_html("# Card\n\n| a | b |\n|---|---|\n| 1 | 2 |\n", "taxi <v3>")
    assert "<table>" in page and "<td>1</td>" in page
    assert "<title>taxi &lt;v3&gt;</title>" in page


@pytest.mark.parametrize("role", ["tech-lead", "business-owner"])
def test_roles_are_the_two_named_ones(role):
    from mlplatform.governance.approvals import Role

    assert Role(role).value == role
    with pytest.raises(ValueError):
        Role("ceo")
