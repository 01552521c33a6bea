"""Governance: registry lifecycle (stages on aliases + tags), two-person approval, a
hash-chained audit trail, lineage with reproduction, and model cards."""
