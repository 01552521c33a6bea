"""Batch scoring and feature aggregates on a Spark cluster (a standalone one on loopback here).

`cluster` starts and stops a real standalone master and workers from the PySpark wheel,
`scoring` scores a file with the MLflow artifact through `mlflow.pyfunc.spark_udf`, `features`
computes the feature build's aggregate tables. PySpark is imported lazily by each function:
the rest of the platform does not pay for it (docs/decisions/0027).
"""
