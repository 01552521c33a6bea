"""Batch scoring pipeline: one file in, predictions with model and data versions out.

`python -m pipelines.batch_scoring` compiles it to pipelines/compiled/batch_scoring.yaml.
"""

from pathlib import Path

from kfp import dsl

from components.serving import score_batch
from pipelines.compiling import compile_pipeline
from pipelines.resources import small


@dsl.pipeline(
    name="mlplatform-batch-scoring",
    description="Score a CSV/parquet file with a registered model alias.",
)
def batch_scoring_pipeline(
    usecase: str = "taxi",
    source: str = "",
    home: str = "/data/mlplatform",
    model_alias: str = "champion",
    spark_master: str = "",  # empty: score in the task; spark://host:7077: on that cluster
):
    task = small(
        score_batch(
            usecase=usecase,
            source=source,
            home=home,
            model_alias=model_alias,
            spark_master=spark_master,
        ),
        memory="4G",
    )
    task.set_display_name("score-batch")


def compile_to(out_dir: Path) -> Path:
    return compile_pipeline(batch_scoring_pipeline, out_dir, "batch_scoring.yaml")


if __name__ == "__main__":
    print(compile_to(Path(__file__).parent / "compiled"))
