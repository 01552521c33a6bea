"""The reference a batch's drift is judged against, and the content already accepted.

The reference is the accepted data that trained the current champion (recorded in the
catalogue when a version becomes champion); before any model exists, the whole accepted
history. Never one previous batch: a single batch is as noisy as the one being judged.
Profiles are fitted once per set of batches and cached under `<workspace>/references/`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlplatform.data.catalogue import Catalogue
from mlplatform.data.drift import ReferenceProfile
from mlplatform.data.reading import read_batch
from mlplatform.spec import UseCase
from mlplatform.workspace import Workspace


def reference_batches(cat: Catalogue, spec: UseCase, exclude: str) -> tuple[str, list]:
    """(origin in words, usable batch records) of the current reference."""
    usable = [r for r in cat.usable(spec.name) if r.batch_id != exclude]
    recorded = cat.reference(spec.name)
    if recorded is not None:
        origin, ids = recorded
        chosen = [r for r in usable if r.batch_id in set(ids)]
        if chosen:
            return f"{origin}'s training data", chosen
    return "the accepted history", usable


def reference_profile(spec: UseCase, ws: Workspace, exclude: str = "") -> ReferenceProfile | None:
    """The current reference profile, or None when no batch has been accepted yet."""
    cat = Catalogue(ws.catalogue)
    origin, records = reference_batches(cat, spec, exclude)
    if not records:
        return None
    ids = sorted(r.batch_id for r in records)
    key = hashlib.sha256(json.dumps([spec.spec_hash(), origin, ids]).encode()).hexdigest()[:16]
    path = ws.root / "references" / f"{key}.json"
    if path.exists():
        return ReferenceProfile.from_dict(json.loads(path.read_text()))
    tables = [read_batch(Path(r.stored_path), spec, r.format).table for r in records]
    rows = sum(t.num_rows for t in tables)
    words = f"{origin} ({len(records)} batch{'es' if len(records) > 1 else ''}, {rows:,} rows)"
    profile = ReferenceProfile.fit(tables, spec, origin=words)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(profile.to_dict()))
    tmp.replace(path)
    return profile


def record_champion(spec: UseCase, home: Path, version: str, batch_ids: list[str]) -> None:
    """From now on, batches are judged against the data that trained `version`."""
    if not batch_ids:
        return
    ws = Workspace.for_usecase(home, spec.name)
    Catalogue(ws.catalogue).set_reference(spec.name, f"champion v{version}", batch_ids)
