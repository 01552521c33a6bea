"""Versioned data: the batch catalogue and ingestion."""
