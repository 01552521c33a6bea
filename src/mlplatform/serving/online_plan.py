"""What the model server's online lookup does with a request, without Feast: which online
view serves each omitted field, the entity keys each row must carry (checked and coerced to
the view's key type), and how found and missing rows merge into the instances. The Feast
adapter is mlplatform.serving.online; see docs/decisions/0017-online-lookup-in-server.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Real

from mlplatform.packaging.contract import ContractError


class EntityKeyError(ContractError):
    """An entity key a lookup needs is missing, null or mistyped: a 400 naming the key."""


class UnknownEntity(LookupError):
    """An entity with no row in the online store (policy `reject`): a 422 naming it."""


class OnlineStoreError(RuntimeError):
    """The online store failed (unreachable, corrupt): a 503, the request was fine."""


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # "int", "float", "string" or "other" (passed as sent)


@dataclass(frozen=True)
class ViewLookup:
    """One online feature view: the model inputs it serves and the keys it is read by."""

    name: str
    keys: tuple[Key, ...]
    fields: tuple[str, ...]

    def refs(self) -> list[str]:
        return [f"{self.name}:{f}" for f in self.fields]


@dataclass(frozen=True)
class Miss:
    view: str
    row: str  # where in the request, e.g. "instances[3]"
    entity: dict


@dataclass
class Filled:
    rows: list[dict]
    looked_up: dict[str, int] = field(default_factory=dict)  # view -> rows read
    misses: list[Miss] = field(default_factory=list)


# (views, entity rows) -> (field -> values, view -> found per row)
Fetch = Callable[[list[ViewLookup], list[dict]], tuple[dict[str, list], dict[str, list[bool]]]]


@dataclass(frozen=True)
class LookupPlan:
    views: tuple[ViewLookup, ...]
    inputs: frozenset[str]

    @classmethod
    def build(cls, views: Sequence[ViewLookup], inputs: Sequence[str]) -> LookupPlan:
        """Keep the views that serve a model input, and only those inputs; a field served by
        two views is ambiguous (which one did training read?) and refused."""
        wanted, owner, kept = set(inputs), {}, []
        for v in views:
            fields = tuple(f for f in v.fields if f in wanted)
            for f in fields:
                if f in owner:
                    raise ValueError(f"{f} is served by two online views, {owner[f]} and {v.name}")
                owner[f] = v.name
            if fields:
                kept.append(ViewLookup(v.name, v.keys, fields))
        return cls(tuple(kept), frozenset(wanted))

    @property
    def extra_keys(self) -> frozenset[str]:
        """Entity keys that are not model inputs (credit's `id`): accepted, then dropped."""
        return frozenset(k.name for v in self.views for k in v.keys) - self.inputs

    def fill(self, rows: list[dict], fetch: Fetch, where: Callable[[int], str]) -> Filled:
        """Rows with the omitted served fields added from `fetch` (one call per distinct set
        of rows); misses are reported, not raised, so the caller counts them first."""
        out = [dict(r) for r in rows]
        groups: dict[tuple[int, ...], list[ViewLookup]] = {}
        entities: dict[int, dict] = {}
        for v in self.views:
            idx = []
            for i, row in enumerate(rows):
                if all(f in row for f in v.fields):
                    continue  # the client sent them all: nothing to read
                values = {k.name: self._key(row, k, v, where(i)) for k in v.keys}
                if any(x is None for x in values.values()):
                    # A null key that is a model input (a trip without a company): training
                    # joined no row for it either, so its features are null there too.
                    for f in v.fields:
                        out[i].setdefault(f, None)
                    continue
                entities.setdefault(i, {}).update(values)
                idx.append(i)
            if idx:
                groups.setdefault(tuple(idx), []).append(v)
        result = Filled(out)
        for idx, views in groups.items():
            keys = {k.name for v in views for k in v.keys}
            entity_rows = [{k: entities[i][k] for k in keys} for i in idx]
            values, found = fetch(views, entity_rows)
            for v in views:
                result.looked_up[v.name] = result.looked_up.get(v.name, 0) + len(idx)
                for j, i in enumerate(idx):
                    hit = found[v.name][j]
                    if not hit:
                        ent = {k.name: entities[i][k.name] for k in v.keys}
                        result.misses.append(Miss(v.name, where(i), ent))
                    for f in v.fields:  # setdefault: what the client sent wins
                        out[i].setdefault(f, values[f][j] if hit else None)
        if self.extra_keys:
            for row in out:
                for k in self.extra_keys:
                    row.pop(k, None)
        return result

    def _key(self, row: dict, key: Key, view: ViewLookup, where: str):
        need = f"to look up {list(view.fields)} (online view {view.name})"
        if key.name not in row:
            raise EntityKeyError(
                f"{where} lacks entity key '{key.name}' needed {need}; send it, or send "
                "those fields yourself"
            )
        value = row[key.name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if key.name in self.inputs:
                return None
            raise EntityKeyError(f"{where}.{key.name} is null; the entity key is needed {need}")
        return _coerce_key(value, key, f"{where}.{key.name}")


INT64_LIMIT = 2**63  # Feast stores integer keys as int64


def _coerce_key(value, key: Key, where: str):
    whole = _whole_number(value)
    if key.kind == "int":
        if whole is not None and -INT64_LIMIT <= whole < INT64_LIMIT:
            return whole
        raise EntityKeyError(f"{where}: expected a 64-bit integer entity key, got {value!r}"[:300])
    if key.kind == "float":
        if isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise EntityKeyError(
            f"{where}: expected a finite number as entity key, got {value!r}"[:300]
        )
    if key.kind == "string":
        if isinstance(value, str):
            return value
        if whole is not None:  # as the contract does for categories coded as numbers
            return str(whole)
        raise EntityKeyError(f"{where}: expected a text entity key, got {value!r}"[:300])
    return value


def _whole_number(value) -> int | None:
    """`value` as an int when it is one (8 or 8.0), else None; never raises on huge floats."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    if isinstance(value, int):
        return int(value)
    f = float(value)
    return int(f) if math.isfinite(f) and f.is_integer() else None


def refuse_misses(misses: list[Miss]) -> None:
    """Raise UnknownEntity naming the first misses (policy `reject`)."""
    if not misses:
        return
    shown = "; ".join(f"{m.row}: {m.entity} (online view {m.view})" for m in misses[:3])
    more = f" and {len(misses) - 3} more" if len(misses) > 3 else ""
    raise UnknownEntity(
        f"no online features for {shown}{more}: the entity is not in the online store "
        "(new, or not materialized); send the features yourself"
    )
