"""Lifecycle stages on MLflow aliases and tags (MLflow's own stages are deprecated).

- Staging    = the `challenger` alias (battery passed, beat the champion).
- Production = the `champion` alias.
- Archived   = the version tag `stage=Archived` (a version that held a stage and lost it).

Every transition is appended to the registered model's stage history: one tag per event,
`stage_history.<ns timestamp>` = JSON {version, stage, at, actor, reason}, so the registry
itself answers "which version held which stage when" and what to roll back to.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from mlplatform.registry import models as reg
from mlplatform.spec import UseCase
from mlplatform.tracking import registered_model_name

HISTORY_PREFIX = "stage_history."
STAGE_TAG = "stage"
ROLLED_BACK = "rolled back"  # the reason prefix of a version archived by a rollback


class Stage(StrEnum):
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


ALIAS_OF = {Stage.STAGING: reg.CHALLENGER, Stage.PRODUCTION: reg.CHAMPION}


@dataclass(frozen=True)
class StageEvent:
    """One transition: `version` entered `stage` at `at` (ISO, UTC)."""

    key: str  # the registered-model tag holding it; orders the history
    version: str
    stage: str
    at: str
    actor: str
    reason: str

    def line(self) -> str:
        return f"{self.at}  v{self.version:<4} {self.stage:<10} by {self.actor}: {self.reason}"


def history(spec: UseCase) -> list[StageEvent]:
    """Every stage transition of the use case's registered model, oldest first."""
    try:
        tags = reg.client().get_registered_model(registered_model_name(spec.name)).tags
    except Exception:  # no registered model yet: no history
        return []
    events = []
    for key in sorted(k for k in tags if k.startswith(HISTORY_PREFIX)):
        data = json.loads(tags[key])
        events.append(StageEvent(key=key, **data))
    return events


def stage_of(spec: UseCase, version: str) -> str:
    """The version's stage now: aliases first (they are what serving resolves), then the tag."""
    version = str(version)
    if reg.alias_version(spec, reg.CHAMPION) == version:
        return Stage.PRODUCTION.value
    if reg.alias_version(spec, reg.CHALLENGER) == version:
        return Stage.STAGING.value
    archived = reg.version_tags(spec, version).get(STAGE_TAG) == Stage.ARCHIVED
    return Stage.ARCHIVED.value if archived else "None"


def _record(spec: UseCase, version: str, stage: Stage, actor: str, reason: str) -> StageEvent:
    c = reg.client()
    name = registered_model_name(spec.name)
    # Nanosecond keys sort in time order and never collide between two writers.
    key = f"{HISTORY_PREFIX}{time.time_ns():020d}"
    at = datetime.now(UTC).isoformat(timespec="seconds")
    event = StageEvent(key, str(version), stage.value, at, actor, reason)
    body = {k: v for k, v in asdict(event).items() if k != "key"}
    c.set_registered_model_tag(name, key, json.dumps(body, sort_keys=True))
    c.set_model_version_tag(name, str(version), STAGE_TAG, stage.value)
    return event


def move_alias(
    spec: UseCase,
    stage: Stage,
    version: str,
    actor: str,
    reason: str,
    home: Path | None = None,
    archive_reason: str | None = None,
) -> list[StageEvent]:
    """Give `version` the stage's alias, archive the version that held it, and record both
    (in the registry's stage history, and in the audit trail when `home` is given)."""
    c = reg.client()
    name = registered_model_name(spec.name)
    alias = ALIAS_OF[stage]
    previous = reg.alias_version(spec, alias)
    c.set_registered_model_alias(name, alias, str(version))
    events = []
    if previous is not None and previous != str(version):
        events.append(
            _record(
                spec,
                previous,
                Stage.ARCHIVED,
                actor,
                archive_reason or f"{stage.value} passed to v{version}",
            )
        )
    if stage is Stage.PRODUCTION and reg.alias_version(spec, reg.CHALLENGER) == str(version):
        c.delete_registered_model_alias(name, reg.CHALLENGER)  # it left Staging for Production
    events.append(_record(spec, str(version), stage, actor, reason))
    if home is not None and stage is Stage.PRODUCTION:
        champion_is_reference(spec, home, str(version))
    if home is not None:
        from mlplatform.governance.records import log_event

        for e in events:
            log_event(
                spec, home, "stage", e.actor, version=e.version, stage=e.stage, reason=e.reason
            )
    return events


def champion_is_reference(spec: UseCase, home: Path, version: str) -> None:
    """The validation gate judges later batches against the data that trained `version`."""
    from mlplatform.validation.reference import record_champion

    batches = reg.version_tags(spec, version).get("data_batches", "")
    record_champion(spec, home, version, [b for b in batches.split(",") if b])


def candidate(spec: UseCase, events: list[StageEvent] | None = None) -> StageEvent | None:
    """The Staging entry of the current challenger: its key is the candidacy that approvals
    belong to. None when no version holds `challenger`."""
    events = history(spec) if events is None else events
    holder = reg.alias_version(spec, reg.CHALLENGER)
    if holder is None:
        return None
    staged = [e for e in events if e.stage == Stage.STAGING]
    if not staged or staged[-1].version != holder:
        raise reg.PromotionRefused(
            f"the challenger alias points at v{holder} but the stage history's last Staging "
            f"entry is {('v' + staged[-1].version) if staged else 'missing'}: the alias was "
            "moved outside the platform; re-run the registration so the gate and battery apply"
        )
    return staged[-1]


def previous_production(spec: UseCase, events: list[StageEvent] | None = None) -> str | None:
    """The version that held Production before the current champion (the rollback target)."""
    events = history(spec) if events is None else events
    current = reg.alias_version(spec, reg.CHAMPION)
    last_prod: dict[str, int] = {}
    last_rolled_back: dict[str, int] = {}
    for i, e in enumerate(events):
        if e.stage == Stage.PRODUCTION:
            last_prod[e.version] = i
        elif e.stage == Stage.ARCHIVED and e.reason.startswith(ROLLED_BACK):
            last_rolled_back[e.version] = i
    # Newest production holder first; a version rolled back since it last held Production
    # is not a target (rolling back twice must not return to the version just removed).
    for v, i in sorted(last_prod.items(), key=lambda kv: kv[1], reverse=True):
        if v != current and last_rolled_back.get(v, -1) < i:
            return v
    return None
