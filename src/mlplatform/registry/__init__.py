"""The MLflow model registry: versions with lineage, aliases and the champion-challenger gate."""
