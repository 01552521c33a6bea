"""Serving: the KServe-protocol model server and the request contract it enforces."""
