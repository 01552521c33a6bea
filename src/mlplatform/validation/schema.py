"""The TFDV schema of a use case, derived from its spec and checked into `schemas/`.

The spec is the curated source; `mlplatform schema build` writes `schemas/<name>.pbtxt` so that
reviewers see the exact constraints the gate applies, and a test keeps the two in step.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from mlplatform.spec import Column, ColumnType, Role, UseCase

TRAINING = "TRAINING"
SERVING = "SERVING"

_TYPES = {
    ColumnType.INT: schema_pb2.INT,
    ColumnType.FLOAT: schema_pb2.FLOAT,
    ColumnType.CATEGORY: schema_pb2.BYTES,
    ColumnType.STRING: schema_pb2.BYTES,
}


def build_schema(spec: UseCase) -> schema_pb2.Schema:
    """Types, ranges, allowed categories, presence and environments. Drift is not TFDV's
    comparator but the platform's reference profile (mlplatform.data.drift, ADR 0023)."""
    schema = schema_pb2.Schema()
    schema.default_environment.extend([TRAINING, SERVING])
    for col in spec.columns:
        _add_feature(schema, col)
    return schema


def _add_feature(schema: schema_pb2.Schema, col: Column) -> None:
    f = schema.feature.add()
    f.name = col.name
    f.type = _TYPES[col.type]
    f.presence.min_fraction = round(1.0 - col.max_null_fraction, 6)
    f.presence.min_count = 0 if col.max_null_fraction > 0 else 1
    # A row holds one value per column: a list of several would be a format change.
    f.value_count.min = 1
    f.value_count.max = 1
    if col.type is ColumnType.INT and (col.min is not None or col.max is not None):
        if col.min is not None:
            f.int_domain.min = int(col.min)
        if col.max is not None:
            f.int_domain.max = int(col.max)
    elif col.type is ColumnType.FLOAT:
        if col.min is not None:
            f.float_domain.min = col.min
        if col.max is not None:
            f.float_domain.max = col.max
        f.float_domain.disallow_nan = True
    elif col.categories is not None:
        f.string_domain.name = col.name
        f.string_domain.value.extend(col.categories)
        f.distribution_constraints.min_domain_mass = round(1.0 - col.max_unseen_fraction, 6)
    if col.role in (Role.LABEL, Role.EXCLUDED):
        # Not known when a request is served: the label, and excluded (often leaking) columns.
        f.not_in_environment.append(SERVING)


def schema_text(schema: schema_pb2.Schema) -> str:
    header = (
        "# Generated from the use-case spec by `mlplatform schema build`; edit the spec, not\n"
        "# this file. The validation gate checks every batch against it.\n"
    )
    return header + text_format.MessageToString(schema)


def schema_path(root: Path, usecase: str) -> Path:
    return root / "schemas" / f"{usecase}.pbtxt"


class StaleSchema(RuntimeError):
    """The checked-in schema no longer matches the spec; the message holds the diff."""


def schema_diff(spec: UseCase, root: Path) -> str:
    """Unified diff from the checked-in schema to the one the spec gives ('' when current)."""
    path = schema_path(root, spec.name)
    want = schema_text(build_schema(spec))
    have = path.read_text() if path.exists() else ""
    if have == want:
        return ""
    return "".join(
        difflib.unified_diff(
            have.splitlines(keepends=True),
            want.splitlines(keepends=True),
            fromfile=f"{path} (checked in)",
            tofile=f"{path} (from usecases/{spec.name}.yaml)",
        )
    )


def ensure_schema(spec: UseCase, root: Path) -> str:
    """Build a missing schema ('built'), accept a current one ('current'), refuse a stale one:
    a gate silently judging by constraints the spec no longer states is what this prevents,
    and a silent rewrite would hide a constraint change from review."""
    path = schema_path(root, spec.name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(schema_text(build_schema(spec)))
        return "built"
    diff = schema_diff(spec, root)
    if not diff:
        return "current"
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    raise StaleSchema(
        f"{path} is out of date with usecases/{spec.name}.yaml ({len(changed)} changed "
        f"lines). Review the change: mlplatform schema build -u {spec.name} --check; "
        f"accept it: mlplatform schema build -u {spec.name} (or make schemas)"
    )


def load_schema(path: Path) -> schema_pb2.Schema:
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no schema; run `mlplatform schema build --usecase <name>` and commit it"
        )
    return text_format.Parse(path.read_text(), schema_pb2.Schema())


def schema_version(schema: schema_pb2.Schema) -> str:
    """A short content hash recorded with each batch checked against this schema."""
    return hashlib.sha256(schema.SerializeToString(deterministic=True)).hexdigest()[:12]
