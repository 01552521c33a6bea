"""Monitoring and continuous learning: Prometheus, request logs, drift, delayed-label
performance, business KPI, retraining triggers and the replay that exercises them."""
