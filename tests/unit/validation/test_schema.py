"""The checked-in TFDV schema is what the spec says, with a serving environment."""

from __future__ import annotations

from mlplatform.validation.schema import (
    SERVING,
    build_schema,
    load_schema,
    schema_path,
    schema_text,
)


def test_checked_in_schema_is_current(usecase, repo_root):
    path = schema_path(repo_root, usecase.name)
    assert path.read_text() == schema_text(build_schema(usecase)), (
        f"{path} is stale: run `make schemas` and commit it"
    )


def test_schema_carries_spec_constraints(taxi, repo_root):
    schema = load_schema(schema_path(repo_root, "taxi"))
    by_name = {f.name: f for f in schema.feature}
    assert set(by_name) == {c.name for c in taxi.columns}
    assert by_name["fare"].float_domain.max == 1000
    assert list(by_name["payment_type"].string_domain.value)[:2] == ["Cash", "Credit Card"]
    assert abs(by_name["company"].presence.min_fraction - 0.5) < 1e-9
    # Drift is the reference profile's (mlplatform.data.drift), not TFDV's comparator: a
    # comparator in the schema would judge against one previous batch again.
    assert not any(f.HasField("drift_comparator") for f in schema.feature)


def test_label_and_leaky_columns_absent_when_serving(taxi):
    schema = build_schema(taxi)
    not_serving = {f.name for f in schema.feature if SERVING in f.not_in_environment}
    assert {"big_tipper", "tips"} <= not_serving
    assert "fare" not in not_serving
