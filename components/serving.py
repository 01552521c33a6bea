"""Serving components: batch scoring from a registered model."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def score_batch(
    usecase: str,
    source: str,
    home: str,
    model_alias: str,
    predictions: Output[Dataset],
    spark_master: str = "",
) -> int:
    """Score a file with the registry alias's model; rows carry model and data versions.
    With `spark_master` (spark://host:7077) the job runs on that Spark cluster and the
    predictions are a Parquet dataset folder (mlplatform.spark.scoring)."""
    from pathlib import Path

    from mlplatform.jobs.scoring import score_job, score_job_spark

    if spark_master:
        out = score_job_spark(
            usecase, Path(source), Path(predictions.path), Path(home), spark_master,
            alias=model_alias,
        )
    else:
        out = score_job(
            usecase, Path(source), Path(predictions.path), Path(home), alias=model_alias
        )
    predictions.metadata.update(
        {"model_version": out.model_version, "data_version": out.data_version, "rows": out.rows}
    )
    return out.rows
