"""The Feast feature store of a use case: tables from accepted batches, definitions, retrieval."""
