"""Release files: the canary policy a user writes in YAML (Flagger-like settings).

Every key is a `CanaryPolicy` field; an unknown key, a wrong type or an out-of-range value is
an error naming the key and the file, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from mlplatform.release.canary import CanaryPolicy
from mlplatform.workspace import REPO_ROOT

DEFAULT_RELEASE = REPO_ROOT / "releases" / "canary.yaml"


class ReleaseError(ValueError):
    """A release file that cannot become a policy; the message names the key."""


def policy_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(CanaryPolicy)}


def load_policy(path: Path | None = None, **overrides: Any) -> CanaryPolicy:
    """The policy in `path` (default releases/canary.yaml), with non-None overrides on top."""
    path = Path(path) if path else DEFAULT_RELEASE
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ReleaseError(f"cannot read release file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ReleaseError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("canary", {}), dict):
        raise ReleaseError(f"{path}: expected a mapping under 'canary:'")
    settings = dict(raw.get("canary", {}))
    settings.update({k: v for k, v in overrides.items() if v is not None})
    fields = policy_fields()
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ReleaseError(f"{path}: unknown canary setting {unknown[0]!r}; known: {known}")
    for key, value in settings.items():
        settings[key] = _coerce(path, key, value, type(getattr(CanaryPolicy(), key)))
    try:
        return CanaryPolicy(**settings)
    except ValueError as exc:
        raise ReleaseError(f"{path}: {exc}") from exc


def _coerce(path: Path, key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ReleaseError(
            f"{path}: canary setting {key!r} must be of type {kind.__name__}, got {value!r}"
        )
    return value


def describe(policy: CanaryPolicy) -> str:
    """One line per setting, for printing before a release starts."""
    return "\n".join(f"  {k}: {getattr(policy, k)}" for k in policy_fields())
