"""Resources and cluster settings for pipeline tasks, set in one place rather than on every call.

The image is `components.COMPONENT_IMAGE` (override with MLPLATFORM_COMPONENT_IMAGE before
`make compile`). What a task needs on a cluster besides the image is added here too: the shared
volume that holds the platform home, and the in-cluster MLflow server. `kfp.local` ignores both
(its SubprocessRunner uses neither environment variables nor the platform spec), so `make run`
is unchanged.
"""

from kfp.dsl import PipelineTask

from components import COMPONENT_IMAGE
from mlplatform.cluster.layout import CLUSTER_TRACKING_URI, DATA_MOUNT, HOME_PVC

# The volume holds the home (catalogue, features, MLflow artifacts) and the source files, so
# tasks in different pods see each other's state as they do on a laptop.

__all__ = ["CLUSTER_TRACKING_URI", "COMPONENT_IMAGE", "DATA_MOUNT", "HOME_PVC", "small"]


def on_cluster(task: PipelineTask) -> PipelineTask:
    """Mount the home volume and point tracking at the cluster's MLflow server."""
    task.set_env_variable("MLPLATFORM_TRACKING_URI", CLUSTER_TRACKING_URI)
    # The platform config of kfp-kubernetes' `mount_pvc`, written as the dict it produces
    # (KubernetesExecutorConfig.pvcMount): that package is not in the pipeline lock.
    # `constant` is the field every KFP 2.x backend reads (2.4 included).
    kubernetes = task.platform_config.setdefault("kubernetes", {})
    kubernetes.setdefault("pvcMount", []).append({"constant": HOME_PVC, "mountPath": DATA_MOUNT})
    return task


def small(task: PipelineTask, cpu: str = "1", memory: str = "2G") -> PipelineTask:
    """Requests that fit the kind cluster of the README; caching off so reruns re-judge data."""
    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
    task.set_caching_options(False)
    return on_cluster(task)
