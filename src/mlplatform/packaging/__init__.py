"""The MLflow pyfunc artifact: preprocessing and model together, every dependency pinned."""
