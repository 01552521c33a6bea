"""Resources for pipeline tasks, set in one place rather than on every call."""

from kfp.dsl import PipelineTask


def small(task: PipelineTask, cpu: str = "1", memory: str = "2G") -> PipelineTask:
    """Requests that fit the kind cluster of the README; caching off so reruns re-judge data."""
    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
    task.set_caching_options(False)
    return task
