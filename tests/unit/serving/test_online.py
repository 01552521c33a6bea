"""The server's online-lookup plan and merge (mlplatform.serving.online), without a store:
which rows are read, that the client's values win, and errors that name the key or entity."""

from __future__ import annotations

import pytest

from mlplatform.serving.online import (
    EntityKeyError,
    Key,
    LookupPlan,
    UnknownEntity,
    ViewLookup,
    refuse_misses,
)

AREA = ViewLookup("area_stats", (Key("area", "int"),), ("area_trips", "area_fare", "unused"))
COMPANY = ViewLookup("company_stats", (Key("company", "string"),), ("company_trips",))
INPUTS = ["area", "company", "fare", "area_trips", "area_fare", "company_trips"]
STORE = {
    "area_stats": {8: {"area_trips": 24, "area_fare": 11.5}},
    "company_stats": {"Acme": {"company_trips": 7}},
}


class Reads:
    """A stand-in for the online store over STORE, recording every read."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[dict]]] = []

    def __call__(self, views, entity_rows):
        self.calls.append(([v.name for v in views], entity_rows))
        values, found = {}, {}
        for v in views:
            (key,) = v.keys
            rows = [STORE[v.name].get(e[key.name]) for e in entity_rows]
            found[v.name] = [r is not None for r in rows]
            for f in v.fields:
                values[f] = [(r or {}).get(f) for r in rows]
        return values, found


def plan() -> LookupPlan:
    return LookupPlan.build([AREA, COMPANY], INPUTS)


def where(i: int) -> str:
    return f"instances[{i}]"


def test_only_model_inputs_are_planned_and_one_read_serves_both_views():
    p, reads = plan(), Reads()
    assert [v.fields for v in p.views] == [("area_trips", "area_fare"), ("company_trips",)]
    out = p.fill([{"area": 8, "company": "Acme", "fare": 3.0}], reads, where)
    assert out.rows == [
        {"area": 8, "company": "Acme", "fare": 3.0, "area_trips": 24, "area_fare": 11.5}
        | {"company_trips": 7}
    ]
    assert len(reads.calls) == 1 and out.looked_up == {"area_stats": 1, "company_stats": 1}


def test_the_clients_values_win_and_complete_rows_are_not_read():
    reads = Reads()
    rows = [
        {"area": 8, "company": "Acme", "area_trips": 99, "area_fare": None, "company_trips": 1},
        {"area": 8, "company": "Acme", "area_trips": 5},
    ]
    out = plan().fill(rows, reads, where)
    assert out.rows[0] == rows[0]  # sent in full, null included: nothing read
    assert out.rows[1]["area_trips"] == 5 and out.rows[1]["area_fare"] == 11.5
    assert out.rows[1]["company_trips"] == 7
    assert [len(e) for _, e in reads.calls] == [1]  # only the second row was read


def test_a_missing_entity_key_names_it():
    with pytest.raises(EntityKeyError, match=r"instances\[0\] lacks entity key 'company'"):
        plan().fill([{"area": 8}], Reads(), where)


def test_a_null_key_that_is_a_model_input_gives_null_features():
    out = plan().fill([{"area": 8, "company": None}], Reads(), where)
    assert out.rows[0]["company_trips"] is None and out.rows[0]["area_trips"] == 24
    assert out.looked_up == {"area_stats": 1} and not out.misses


def test_an_extra_key_is_required_non_null_and_dropped_before_the_model():
    by_id = ViewLookup("client_rows", (Key("id", "int"),), ("limit", "sex"))
    p = LookupPlan.build([by_id], ["limit", "sex"])
    assert p.extra_keys == {"id"}

    def fetch(views, rows):
        return {"limit": [5000] * len(rows), "sex": ["2"] * len(rows)}, {"client_rows": [True]}

    assert p.fill([{"id": 123.0}], fetch, where).rows == [{"limit": 5000, "sex": "2"}]
    with pytest.raises(EntityKeyError, match=r"instances\[0\]\.id is null"):
        p.fill([{"id": None}], fetch, where)


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"area": "eight", "company": "Acme"}, "instances[0].area: expected a 64-bit integer"),
        ({"area": 8.5, "company": "Acme"}, "instances[0].area: expected a 64-bit integer"),
        ({"area": True, "company": "Acme"}, "instances[0].area: expected a 64-bit integer"),
        ({"area": 10**30, "company": "Acme"}, "instances[0].area: expected a 64-bit integer"),
        ({"area": 1e308, "company": "Acme"}, "instances[0].area: expected a 64-bit integer"),
        ({"area": float("inf"), "company": "Acme"}, "instances[0].area: expected a 64-bit"),
        ({"area": 8, "company": ["Acme"]}, "instances[0].company: expected a text"),
    ],
)
def test_bad_keys_are_refused_naming_the_key(row, needle):
    with pytest.raises(EntityKeyError) as err:
        plan().fill([row], Reads(), where)
    assert needle in str(err.value)


def test_unknown_entities_are_reported_then_refused_by_name():
    out = plan().fill(
        [{"area": 8, "company": "Acme"}, {"area": 99, "company": "Acme"}], Reads(), where
    )
    assert [(m.view, m.row, m.entity) for m in out.misses] == [
        ("area_stats", "instances[1]", {"area": 99})
    ]
    assert out.rows[1]["area_trips"] is None  # what `impute` sends on
    with pytest.raises(UnknownEntity, match=r"instances\[1\]: \{'area': 99\}.*area_stats"):
        refuse_misses(out.misses)


def test_a_field_served_by_two_views_is_ambiguous():
    twin = ViewLookup("area_stats_v2", (Key("area", "int"),), ("area_trips",))
    with pytest.raises(ValueError, match="area_trips is served by two online views"):
        LookupPlan.build([AREA, twin], INPUTS)
