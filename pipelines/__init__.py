"""Kubeflow pipelines assembled from the components; each module compiles itself."""
