"""The audit trail of a use case, anchored in the registry.

After every append the trail's head (`seq:hash`) is written to the registered model's tag
`audit.head`, so truncating the file (which leaves a valid chain) is still detected: the file
and the registry would both have to be rewritten.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from mlplatform.governance.audit import AuditTrail, Verification, audit_path
from mlplatform.registry import models as reg
from mlplatform.spec import UseCase
from mlplatform.tracking import registered_model_name

ANCHOR_TAG = "audit.head"


def trail(spec: UseCase, home: Path) -> AuditTrail:
    return AuditTrail(audit_path(home, spec.name))


def anchor(spec: UseCase | str) -> str | None:
    """The head recorded at the last append (for a spec or a registered model name), or None
    (no registered model, nothing logged)."""
    name = spec if isinstance(spec, str) else registered_model_name(spec.name)
    try:
        tags = reg.client().get_registered_model(name).tags
    except Exception:  # no registered model: nothing was anchored
        return None
    return tags.get(ANCHOR_TAG)


def log_event(spec: UseCase, home: Path, event: str, actor: str, **fields: object) -> dict:
    """Append one record (model name included) and move the registry anchor to it."""
    name = registered_model_name(spec.name)
    record = trail(spec, home).append(event, actor, model=name, **fields)
    # A refusal about a model not registered yet has no registry to anchor in: the file
    # still holds it.
    with contextlib.suppress(Exception):
        reg.client().set_registered_model_tag(name, ANCHOR_TAG, f"{record['seq']}:{record['hash']}")
    return record


def verify(spec: UseCase, home: Path) -> Verification:
    """Verify the chain and compare its head with the registry anchor."""
    return trail(spec, home).verify(anchor(spec))


class Refused(reg.PromotionRefused):
    """A governance action the rules forbid; `reasons` say every rule that was not met."""

    def __init__(self, action: str, model: str, version: str | None, reasons: list[str]):
        self.action, self.model, self.version, self.reasons = action, model, version, reasons
        target = f"{model} v{version}" if version else model
        super().__init__(f"{action} of {target} refused: " + "; ".join(reasons))


def refuse(
    spec: UseCase,
    home: Path,
    action: str,
    actor: str,
    version: str | None,
    reasons: list[str],
    **fields: object,
) -> Refused:
    """Record the refusal in the trail and return the exception for the caller to raise."""
    log_event(
        spec, home, "refusal", actor, action=action, version=version, reasons=reasons, **fields
    )
    return Refused(action, registered_model_name(spec.name), version, reasons)
