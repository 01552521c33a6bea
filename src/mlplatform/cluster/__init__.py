"""The cluster column of the design: images, kustomize manifests, KFP submission and KServe
deployment on a kind (or any) cluster. Nothing here imports kfp or kubernetes at import time;
each function loads what it needs, so `mlplatform --help` stays instant.
"""
