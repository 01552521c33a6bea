"""The validation gate: TFDV schema from the spec, statistics, anomalies, quarantine."""
