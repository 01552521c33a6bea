"""Lifecycle and two-person approval on a real MLflow registry (SQLite), with the audit trail.

Each test registers versions of the shared trained taxi run under its own use-case name (its
own registered model and audit trail) in one copy of the `trained_taxi` home.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from mlplatform.governance import stages
from mlplatform.governance.approvals import approve, fairness_problems
from mlplatform.governance.decision import champion_challenger, set_challenger
from mlplatform.governance.promotion import promote, rollback
from mlplatform.governance.records import Refused, trail, verify
from mlplatform.registry import models as reg
from mlplatform.tracking import use_workspace

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gov_home(trained_taxi, tmp_path_factory):
    return trained_taxi.own_home(tmp_path_factory, "governance")


@pytest.fixture
def spec(trained_taxi, gov_home, request):
    # A registered model (and trail) per test: <test name>-classifier.
    name = request.node.name.removeprefix("test_")[:40].replace("-", "_")
    return trained_taxi.spec.model_copy(update={"name": name})


def _version(
    spec, trained_taxi, home, lead: float, battery_ok: bool = True, fairness: str = "pass"
) -> str:
    """Register the trained run as a new version whose recorded quality is `lead` above the
    run's real recent AUC (what the gate measures the champion at, on the same rows); give it
    `challenger` when its battery passes and it beats the champion."""
    run = trained_taxi.run
    quality = run.auc_recent + lead
    v = reg.register(
        spec,
        run.run_id,
        run.model_uri,
        {
            "family": "logistic",
            "selection_quality": f"{quality:.6f}",
            "fairness_verdict": fairness,
            "fairness_passed": str(fairness == "pass").lower(),
        },
    )
    # The shared run's p99 was measured on whatever load this machine had; these tests are
    # about approvals, so the version records a p99 within the budget.
    reg.client().set_model_version_tag(
        f"{spec.name}-classifier", v, "metric.serving_single_p99_ms", "2.5"
    )
    detail = "400 requests: p99 2.5 ms" if battery_ok else "p99 31 ms > budget 10 ms"
    reg.record_battery(spec, v, {"unit": (True, "deterministic"), "load": (battery_ok, detail)})
    decision = champion_challenger(spec, v)
    if battery_ok:
        assert decision.passed, decision.reason
        set_challenger(spec, v, decision, home=home, actor="pipeline")
        assert reg.alias_version(spec, reg.CHALLENGER) == v
    return v


def _approve_both(spec, v, home, tl="alice", bo="bob"):
    approve(spec, v, "tech-lead", tl, home)
    approve(spec, v, "business-owner", bo, home)


def test_two_person_promotion_records_stages_and_audit(spec, trained_taxi, gov_home):
    v1 = _version(spec, trained_taxi, gov_home, 0.0)
    assert stages.stage_of(spec, v1) == "Staging"
    _approve_both(spec, v1, gov_home)
    res = promote(spec, v1, "carol", gov_home)
    assert res.version == v1 and res.previous is None
    assert res.approvals == {"tech-lead": "alice", "business-owner": "bob"}
    assert reg.alias_version(spec, reg.CHAMPION) == v1
    assert reg.alias_version(spec, reg.CHALLENGER) is None  # it left Staging
    assert stages.stage_of(spec, v1) == "Production"
    assert [(e.version, e.stage) for e in stages.history(spec)] == [
        (v1, "Staging"),
        (v1, "Production"),
    ]
    events = [r["event"] for r in trail(spec, gov_home).records()]
    assert events == ["stage", "approval", "approval", "stage", "promotion"]
    assert verify(spec, gov_home).ok


def test_an_inconclusive_fairness_needs_the_business_owners_acceptance(
    spec, trained_taxi, gov_home
):
    v = _version(spec, trained_taxi, gov_home, 0.0, fairness="inconclusive")
    assert reg.alias_version(spec, reg.CHALLENGER) == v  # it may be the challenger
    _approve_both(spec, v, gov_home)
    with pytest.raises(Refused, match="fairness is INCONCLUSIVE.*--accept-fairness"):
        promote(spec, v, "carol", gov_home)
    assert reg.alias_version(spec, reg.CHAMPION) is None

    v2 = _version(spec, trained_taxi, gov_home, 0.01, fairness="inconclusive")
    with pytest.raises(Refused, match="only the business owner can accept"):
        approve(spec, v2, "tech-lead", "alice", gov_home, accept_fairness="fine")
    approve(spec, v2, "tech-lead", "alice", gov_home)
    with pytest.raises(Refused, match="needs a reason"):
        approve(spec, v2, "business-owner", "bob", gov_home, accept_fairness="  ")
    reason = "age 55+ FNR gap [0.08, 0.22]: outreach only, reviewed by a person; re-check in Q1"
    approve(spec, v2, "business-owner", "bob", gov_home, accept_fairness=reason)
    res = promote(spec, v2, "carol", gov_home)
    assert res.version == v2
    production = [e for e in stages.history(spec) if e.stage == "Production"][-1]
    assert f"fairness INCONCLUSIVE accepted by bob: {reason}" in production.reason
    records = trail(spec, gov_home).records()
    assert [r for r in records if r["event"] == "promotion"][-1]["fairness_accepted"] == reason
    assert reg.version_tags(spec, v2)["fairness_accepted"].endswith(reason)
    from mlplatform.governance.cards import build_markdown

    card = build_markdown(spec, v2, gov_home)
    approvals = card.split("## Approvals", 1)[1].split("##", 1)[0]
    assert "fairness accepted (reason)" in approvals and f"| bob | {reason} |" in approvals


def test_a_fair_pass_needs_no_acceptance_and_a_fail_cannot_be_accepted(
    spec, trained_taxi, gov_home
):
    v = _version(spec, trained_taxi, gov_home, 0.0)
    with pytest.raises(Refused, match="fairness is PASS: there is nothing to accept"):
        approve(spec, v, "business-owner", "bob", gov_home, accept_fairness="just in case")
    run = trained_taxi.run
    failed = reg.register(
        spec, run.run_id, run.model_uri,
        {"family": "logistic", "selection_quality": "0.99", "fairness_verdict": "fail",
         "fairness_passed": "false"},
    )
    reg.record_battery(spec, failed, {"unit": (True, "deterministic")})
    decision = champion_challenger(spec, failed)
    assert not decision.passed and "fairness gate FAIL" in decision.reason
    with pytest.raises(reg.PromotionRefused, match="fairness gate FAIL"):
        set_challenger(spec, failed, decision, home=gov_home, actor="pipeline")
    problems = fairness_problems(spec, failed, {"business-owner": {"accept_fairness": "please"}})
    assert problems and "it cannot be accepted" in problems[0]


def test_self_approval_in_both_roles_refused(spec, trained_taxi, gov_home):
    v = _version(spec, trained_taxi, gov_home, 0.0)
    approve(spec, v, "tech-lead", "alice", gov_home)
    with pytest.raises(Refused, match="alice already approved v.* as tech-lead: the two-person"):
        approve(spec, v, "business-owner", "alice", gov_home)
    with pytest.raises(Refused, match="lacks the business-owner approval"):
        promote(spec, v, "alice", gov_home)
    assert reg.alias_version(spec, reg.CHAMPION) is None
    refusals = [r for r in trail(spec, gov_home).records() if r["event"] == "refusal"]
    assert [r["action"] for r in refusals] == ["approval", "promotion"]


def test_one_role_only_refused(spec, trained_taxi, gov_home):
    v = _version(spec, trained_taxi, gov_home, 0.0)
    approve(spec, v, "business-owner", "bob", gov_home)
    with pytest.raises(Refused) as info:
        promote(spec, v, "bob", gov_home)
    assert info.value.reasons == [f"v{v} lacks the tech-lead approval"]
    with pytest.raises(Refused, match="already has its business-owner approval \\(by bob\\)"):
        approve(spec, v, "business-owner", "dave", gov_home)


def test_approval_of_another_version_and_after_supersession_refused(spec, trained_taxi, gov_home):
    v1 = _version(spec, trained_taxi, gov_home, 0.0)
    approve(spec, v1, "tech-lead", "alice", gov_home)
    v2 = _version(spec, trained_taxi, gov_home, 0.01)  # a newer challenger replaces v1
    assert stages.stage_of(spec, v1) == "Archived"
    with pytest.raises(Refused, match=f"v{v1} was superseded by v{v2}.*approvals of v{v1} expired"):
        approve(spec, v1, "business-owner", "bob", gov_home)
    with pytest.raises(Refused, match=f"v{v1} was superseded by v{v2}"):
        promote(spec, v1, "bob", gov_home)
    # v1's approval does not carry over to v2.
    with pytest.raises(Refused, match=f"v{v2} lacks the tech-lead and business-owner approval"):
        promote(spec, v2, "bob", gov_home)
    failed = _version(spec, trained_taxi, gov_home, 0.05, battery_ok=False)
    with pytest.raises(Refused, match=f"v{failed} is not the candidate \\(the challenger is v{v2}"):
        approve(spec, failed, "tech-lead", "alice", gov_home)
    _approve_both(spec, v2, gov_home)
    assert promote(spec, v2, "bob", gov_home).version == v2


def test_promotion_of_a_version_that_failed_its_battery_refused(spec, trained_taxi, gov_home):
    v = _version(spec, trained_taxi, gov_home, 0.0)
    _approve_both(spec, v, gov_home)
    # The nightly re-run of the battery fails after approval: promotion must stop.
    reg.record_battery(spec, v, {"unit": (True, ""), "load": (False, "p99 31 ms > 10 ms")})
    with pytest.raises(Refused) as info:
        promote(spec, v, "carol", gov_home)
    assert info.value.reasons == [f"v{v} failed its test battery (load: failed: p99 31 ms > 10 ms)"]
    assert reg.alias_version(spec, reg.CHAMPION) is None
    last = trail(spec, gov_home).records()[-1]
    assert last["event"] == "refusal" and "failed its test battery" in last["reasons"][0]


def test_gate_is_rechecked_at_promotion(spec, trained_taxi, gov_home):
    v1 = _version(spec, trained_taxi, gov_home, 0.0)
    _approve_both(spec, v1, gov_home)
    promote(spec, v1, "carol", gov_home)
    v2 = _version(spec, trained_taxi, gov_home, 0.01)
    _approve_both(spec, v2, gov_home)
    # v2's recorded quality is corrected down to the champion's before it is promoted.
    quality = f"{trained_taxi.run.auc_recent:.6f}"
    reg.client().set_model_version_tag(f"{spec.name}-classifier", v2, "selection_quality", quality)
    with pytest.raises(Refused, match="champion-challenger gate: .*does not beat champion"):
        promote(spec, v2, "carol", gov_home)


def test_rollback_to_previous_production_version(spec, trained_taxi, gov_home):
    v1 = _version(spec, trained_taxi, gov_home, 0.0)
    _approve_both(spec, v1, gov_home)
    promote(spec, v1, "carol", gov_home)
    v2 = _version(spec, trained_taxi, gov_home, 0.01)
    _approve_both(spec, v2, gov_home)
    promote(spec, v2, "canary-controller", gov_home)  # what the canary's on_promote calls
    assert stages.stage_of(spec, v1) == "Archived"
    res = rollback(spec, "oncall", gov_home, "p99 regression")
    assert (res.version, res.rolled_back) == (v1, v2)
    assert reg.alias_version(spec, reg.CHAMPION) == v1
    assert stages.stage_of(spec, v2) == "Archived"
    assert stages.history(spec)[-2].reason.startswith(f"rolled back to v{v1}")
    # v2 was just rolled back: it is no target for a second rollback.
    with pytest.raises(Refused, match="no earlier production version"):
        rollback(spec, "oncall", gov_home)
    assert verify(spec, gov_home).ok


def test_edited_audit_record_detected_and_blocks_promotion(spec, trained_taxi, gov_home):
    v = _version(spec, trained_taxi, gov_home, 0.0)
    _approve_both(spec, v, gov_home, tl="alice", bo="alice2")
    path = trail(spec, gov_home).path
    lines = path.read_text().splitlines()
    rec = json.loads(lines[2])
    assert rec["event"] == "approval" and rec["role"] == "business-owner"
    rec["actor"] = "bob"  # someone "fixes" who approved
    lines[2] = json.dumps(rec, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")
    result = verify(spec, gov_home)
    assert result.problems == [
        "line 3: record 3 (approval) was edited: its content does not match its hash"
    ]
    with pytest.raises(Refused, match="the audit trail fails verification \\(line 3"):
        promote(spec, v, "carol", gov_home)


def test_cli_refusals_exit_nonzero_with_reasons(trained_taxi, gov_home, tmp_path, monkeypatch):
    """The same rules through `mlplatform`, on the real `taxi` model name."""
    from mlplatform.cli import app

    home = tmp_path / "home"
    shutil.copytree(gov_home, home)
    use_workspace(home, "taxi")
    spec = trained_taxi.spec
    v = _version(spec, trained_taxi, home, 0.0)
    cli = CliRunner()

    def run(*args: str):
        return cli.invoke(app, [*args, "--home", str(home)])

    ok = run("approve", "taxi", v, "--role", "tech-lead", "--user", "alice")
    assert ok.exit_code == 0, ok.output
    assert f"alice approved taxi-classifier v{v} as tech-lead" in ok.output
    self_ = run("approve", "taxi-classifier", v, "--role", "business-owner", "--user", "alice")
    assert self_.exit_code == 1 and "two-person rule" in self_.output
    one = run("promote", "taxi", v, "--user", "alice")
    assert one.exit_code == 1 and "lacks the business-owner approval" in one.output
    bad_role = run("approve", "taxi", v, "--role", "ceo", "--user", "bob")
    assert bad_role.exit_code == 2 and "ceo" in bad_role.output
    missing = run("promote", "taxi", "999", "--user", "bob")
    assert missing.exit_code == 1 and "v999 does not exist" in missing.output
    monkeypatch.setenv("MLPLATFORM_USER", "bob")  # identity from the environment
    both = run("approve", "taxi", v, "--role", "business-owner")
    monkeypatch.delenv("MLPLATFORM_USER")
    assert both.exit_code == 0 and "bob approved" in both.output
    promoted = run("promote", "taxi", v, "--user", "carol")
    assert promoted.exit_code == 0 and "is in Production" in promoted.output
    listing = run("stages", "taxi")
    assert f"v{v:<4} Production" in listing.output
    assert run("audit", "verify", "-u", "taxi").exit_code == 0
    path = home / "governance" / "taxi" / "audit.jsonl"
    lines = path.read_text().splitlines()
    del lines[1]
    path.write_text("\n".join(lines) + "\n")
    tampered = run("audit", "verify", "-u", "taxi")
    assert tampered.exit_code == 1 and "line 2:" in tampered.output
    back = run("rollback", "taxi", "--user", "oncall")
    assert back.exit_code == 1 and "no earlier production version" in back.output
