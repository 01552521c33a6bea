"""Promotion to Production and rollback: the only ways `champion` moves.

`promote` is the gate the CLI and the canary controller share: it refuses (raising
`governance.records.Refused`, a `registry.models.PromotionRefused`) unless every rule holds:

1. the audit trail verifies (approvals are read from it, so a tampered trail proves nothing);
2. the version is the current candidate (holds `challenger`, in its current candidacy);
3. two different people approved that exact version, in that candidacy, as tech lead and as
   business owner;
4. its test battery passed (registry tags `battery.*`), and its fairness verdict is PASS, or
   INCONCLUSIVE with the business owner's reasoned acceptance (never FAIL);
5. the champion-challenger gate passes against the champion of the moment.

Every refusal is recorded in the trail with all the reasons, every promotion and rollback too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlplatform.governance import stages
from mlplatform.governance.approvals import (
    approval_problems,
    approvals_of,
    candidacy_problems,
    fairness_problems,
    version_exists,
)
from mlplatform.governance.decision import champion_challenger
from mlplatform.governance.records import log_event, refuse, verify
from mlplatform.registry import models as reg
from mlplatform.spec import UseCase
from mlplatform.tracking import registered_model_name


@dataclass(frozen=True)
class PromotionResult:
    """What `promote` did: `version` is the champion now; `previous` was (now Archived)."""

    model: str
    version: str
    previous: str | None
    approvals: dict[str, str]  # role -> user
    gate: str
    audit_seq: int


@dataclass(frozen=True)
class RollbackResult:
    model: str
    version: str  # the champion again
    rolled_back: str  # the version removed from Production (now Archived)
    audit_seq: int


def promotion_problems(spec: UseCase, version: str, home: Path) -> tuple[list[str], dict]:
    """Every rule `version` does not meet for Production (empty when promotable), and the
    approvals found (role -> audit record)."""
    version = str(version)
    problems: list[str] = []
    check = verify(spec, home)
    if not check.ok:
        problems.append(
            f"the audit trail fails verification ({check.problems[0]}): approvals cannot be "
            "trusted; see `mlplatform audit verify`"
        )
    if not version_exists(spec, version):
        return [*problems, f"v{version} does not exist in {registered_model_name(spec.name)}"], {}
    events = stages.history(spec)
    not_candidate = candidacy_problems(spec, version, events)
    problems += not_candidate
    approvals: dict = {}
    if not not_candidate:  # approvals count only within the version's current candidacy
        cand = stages.candidate(spec, events)
        approvals = approvals_of(spec, home, version, cand.key)
        problems += approval_problems(approvals, version)
    problems += fairness_problems(spec, version, approvals)
    tags = reg.version_tags(spec, version)
    failures = reg.battery_failures(tags)
    if failures:
        problems.append(f"v{version} failed its test battery ({'; '.join(failures)})")
    if reg.alias_version(spec, reg.CHAMPION) != version:
        try:
            decision = champion_challenger(spec, version)
        except KeyError as exc:  # a version registered outside register_job
            problems.append(f"champion-challenger gate cannot run: v{version} lacks {exc}")
        else:
            if not decision.passed:
                problems.append(f"champion-challenger gate: {decision.reason}")
    return problems, approvals


def promote(
    spec: UseCase, version: str, actor: str, home: Path, reason: str = ""
) -> PromotionResult:
    """Make `version` the champion (Production) if every rule holds; raise Refused otherwise.

    The canary controller calls this from `on_promote(version)` after a passed canary, with
    `actor` naming itself (e.g. "canary-controller")."""
    version = str(version)
    problems, approvals = promotion_problems(spec, version, home)
    if problems:
        raise refuse(spec, home, "promotion", actor, version, problems)
    gate = champion_challenger(spec, version)
    previous = reg.alias_version(spec, reg.CHAMPION)
    by_role = {role: rec["actor"] for role, rec in approvals.items()}
    accepted = next((r for r in approvals.values() if r.get("accept_fairness")), None)
    stage_reason = reason or (
        f"promoted; approved by {', '.join(f'{u} ({r})' for r, u in by_role.items())}"
    )
    if accepted:
        stage_reason += (
            f"; fairness INCONCLUSIVE accepted by {accepted['actor']}: "
            f"{accepted['accept_fairness']}"
        )
    stages.move_alias(spec, stages.Stage.PRODUCTION, version, actor, stage_reason, home)
    record = log_event(
        spec,
        home,
        "promotion",
        actor,
        version=version,
        previous=previous,
        approvals=by_role,
        gate=gate.reason,
        reason=reason,
        **({"fairness_accepted": accepted["accept_fairness"]} if accepted else {}),
    )
    return PromotionResult(
        registered_model_name(spec.name), version, previous, by_role, gate.reason, record["seq"]
    )


def rollback(spec: UseCase, actor: str, home: Path, reason: str = "") -> RollbackResult:
    """Give Production back to the version that held it before the current champion.

    No approval is needed (a rollback restores a state that was approved); it is recorded."""
    current = reg.alias_version(spec, reg.CHAMPION)
    target = stages.previous_production(spec)
    problems = []
    if current is None:
        problems.append("no version is in Production: nothing to roll back")
    elif target is None:
        problems.append(
            f"no earlier production version to roll back to from v{current} (versions "
            "already rolled back are not targets)"
        )
    if problems:
        raise refuse(spec, home, "rollback", actor, current, problems)
    why = reason or "rollback"
    stages.move_alias(
        spec,
        stages.Stage.PRODUCTION,
        target,
        actor,
        f"restored by rollback from v{current}: {why}",
        home,
        archive_reason=f"{stages.ROLLED_BACK} to v{target}: {why}",
    )
    record = log_event(
        spec, home, "rollback", actor, version=target, rolled_back=current, reason=why
    )
    return RollbackResult(registered_model_name(spec.name), target, current, record["seq"])
