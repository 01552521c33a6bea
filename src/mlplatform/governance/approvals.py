"""Two-person approval of the candidate (the `challenger`) before it may reach Production.

An approval names the user, the role (tech lead or business owner), the exact version and
the candidacy it was given in (the key of the version's Staging entry in the stage history).
A newer version taking `challenger` starts a new candidacy, so earlier approvals expire; a
version that later becomes challenger again must be approved again.
"""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from mlplatform.governance import stages
from mlplatform.governance.records import log_event, refuse, trail
from mlplatform.registry import models as reg
from mlplatform.spec import UseCase
from mlplatform.tracking import registered_model_name


class Role(StrEnum):
    TECH_LEAD = "tech-lead"
    BUSINESS_OWNER = "business-owner"


def resolve_user(user: str | None = None) -> str:
    """Who acts: the given user, else $MLPLATFORM_USER, else the OS user."""
    who = (user or os.environ.get("MLPLATFORM_USER") or "").strip()
    if who:
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container uid without a passwd entry (a pipeline pod)
        return f"uid-{os.getuid()}"


def version_exists(spec: UseCase, version: str) -> bool:
    try:
        reg.client().get_model_version(registered_model_name(spec.name), str(version))
    except Exception:  # MLflow raises RESOURCE_DOES_NOT_EXIST for an unknown version
        return False
    return True


def candidacy_problems(spec: UseCase, version: str, events: list | None = None) -> list[str]:
    """Why `version` is not the current candidate (empty when it is)."""
    events = stages.history(spec) if events is None else events
    if not version_exists(spec, version):
        return [f"v{version} does not exist in {registered_model_name(spec.name)}"]
    try:
        current = stages.candidate(spec, events)
    except reg.PromotionRefused as exc:
        return [str(exc)]
    if current is not None and current.version == str(version):
        return []
    if reg.alias_version(spec, reg.CHAMPION) == str(version):
        return [f"v{version} is already in Production (the champion)"]
    staged_before = [e for e in events if e.stage == stages.Stage.STAGING and e.version == version]
    if staged_before and current is not None:
        return [
            f"v{version} was superseded by v{current.version} (challenger since {current.at}): "
            f"approvals of v{version} expired; approve v{current.version} instead"
        ]
    if current is None:
        return [f"v{version} is not the candidate: no version holds `{reg.CHALLENGER}`"]
    return [
        f"v{version} is not the candidate (the challenger is v{current.version}): only a "
        "version that passed its battery and the champion-challenger gate can be approved"
    ]


def approvals_of(spec: UseCase, home: Path, version: str, candidacy: str) -> dict[str, dict]:
    """The approvals recorded for this version in this candidacy, by role (first one wins:
    a second approval in a role is refused when it is given)."""
    out: dict[str, dict] = {}
    for rec in trail(spec, home).records():
        if (
            rec.get("event") == "approval"
            and rec.get("version") == str(version)
            and rec.get("candidacy") == candidacy
        ):
            out.setdefault(rec["role"], rec)
    return out


def fairness_verdict(spec: UseCase, version: str):
    """The version's fairness verdict (mlplatform.evaluation.fairness.Verdict)."""
    from mlplatform.evaluation.fairness import verdict_of

    return verdict_of(reg.version_tags(spec, version))


def fairness_problems(spec: UseCase, version: str, approvals: dict[str, dict]) -> list[str]:
    """Why the version's fairness bars Production (empty when it does not): a FAIL always;
    an INCONCLUSIVE until the business owner's approval carries a reasoned acceptance."""
    from mlplatform.evaluation.fairness import Verdict

    verdict = fairness_verdict(spec, version)
    if verdict is Verdict.FAIL:
        return [f"v{version}'s fairness gate is FAIL (a gap is shown to exceed "
                f"{spec.fairness.max_disparity}): it cannot be accepted"]
    owner = approvals.get(Role.BUSINESS_OWNER.value)
    if verdict is Verdict.INCONCLUSIVE and not (owner and owner.get("accept_fairness")):
        return [
            f"v{version}'s fairness is INCONCLUSIVE (the evaluation cannot show its gaps are "
            f"within {spec.fairness.max_disparity}): the business owner must accept it "
            f"explicitly: mlplatform approve {spec.name} {version} --role business-owner "
            '--accept-fairness "<reason>"'
        ]
    return []


def approve(
    spec: UseCase,
    version: str,
    role: Role | str,
    user: str,
    home: Path,
    accept_fairness: str | None = None,
) -> dict:
    """Record `user`'s approval of `version` in `role`; returns the audit record.

    Refused (raises governance.records.Refused, also recorded) when the version is not the
    current candidate, when the same person already approved it in the other role, or when
    the role is already approved by someone else. `accept_fairness` (business owner only) is
    the reasoned acceptance an INCONCLUSIVE fairness verdict needs; a FAIL cannot be accepted
    and a PASS needs none."""
    from mlplatform.evaluation.fairness import Verdict

    role = Role(role)
    version = str(version)
    events = stages.history(spec)
    reasons = candidacy_problems(spec, version, events)
    if accept_fairness is not None and not reasons:
        verdict = fairness_verdict(spec, version)
        if role is not Role.BUSINESS_OWNER:
            reasons.append("only the business owner can accept a fairness verdict")
        elif not accept_fairness.strip():
            reasons.append("--accept-fairness needs a reason (it is kept in the audit trail)")
        elif verdict is Verdict.FAIL:
            reasons.append(f"v{version}'s fairness gate is FAIL: a FAIL cannot be accepted")
        elif verdict is Verdict.PASS:
            reasons.append(f"v{version}'s fairness is PASS: there is nothing to accept")
    if reasons:
        raise refuse(spec, home, "approval", user, version, reasons, role=role.value)
    cand = stages.candidate(spec, events)
    given = approvals_of(spec, home, version, cand.key)
    other = Role.BUSINESS_OWNER if role is Role.TECH_LEAD else Role.TECH_LEAD
    if other.value in given and given[other.value]["actor"] == user:
        reasons.append(
            f"{user} already approved v{version} as {other.value}: the two-person rule needs "
            f"a different person as {role.value}"
        )
    if role.value in given:
        by = given[role.value]["actor"]
        if by == user:
            reasons.append(f"{user} already approved v{version} as {role.value}")
        else:
            reasons.append(f"v{version} already has its {role.value} approval (by {by})")
    if reasons:
        raise refuse(spec, home, "approval", user, version, reasons, role=role.value)
    extra = {"accept_fairness": accept_fairness.strip()} if accept_fairness else {}
    record = log_event(
        spec, home, "approval", user, version=version, role=role.value, candidacy=cand.key,
        **extra,
    )
    # A readable copy on the version for the MLflow UI; the trail stays the authority.
    at = datetime.now(UTC).isoformat(timespec="seconds")
    reg.client().set_model_version_tag(
        registered_model_name(spec.name), version, f"approval.{role.value}", f"{user} at {at}"
    )
    if accept_fairness:
        reg.client().set_model_version_tag(
            registered_model_name(spec.name), version, "fairness_accepted",
            f"{user} at {at}: {accept_fairness.strip()}"[:4900],
        )
    return record


def approval_problems(approvals: dict[str, dict], version: str) -> list[str]:
    """What the two-person rule still lacks for these approvals (empty when satisfied)."""
    missing = [r.value for r in Role if r.value not in approvals]
    problems = []
    if missing:
        problems.append(f"v{version} lacks the {' and '.join(missing)} approval")
    if not missing:
        tl = approvals[Role.TECH_LEAD.value]["actor"]
        bo = approvals[Role.BUSINESS_OWNER.value]["actor"]
        if tl == bo:
            problems.append(f"{tl} approved v{version} in both roles: two different people must")
    return problems
