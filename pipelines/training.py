"""The training pipeline: ingest -> validate -> features -> train x3 -> evaluate x3 -> select ->
register (battery + champion-challenger gate).

`python -m pipelines.training` compiles it to pipelines/compiled/training.yaml.
"""

from pathlib import Path

from kfp import dsl

from components.data import build_features, ingest_data, validate_data
from components.models import evaluate_model, register_model, select_model, train_model
from pipelines.compiling import compile_pipeline
from pipelines.resources import small

PIPELINE_NAME = "mlplatform-training"
FAMILIES = ("logistic", "xgboost", "keras")


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Raw batch to validated features, three candidate models, TFMA slice and "
    "fairness evaluation, selection under latency constraints, and a registered challenger.",
)
def training_pipeline(usecase: str = "taxi", source: str = "", home: str = "/data/mlplatform"):
    ingest = small(ingest_data(usecase=usecase, source=source, home=home))
    ingest.set_display_name("ingest-data")
    validate = small(validate_data(usecase=usecase, batch_id=ingest.output, home=home))
    validate.set_display_name("validate-data")
    # ~1 GB peak for taxi since the training set is retrieved in runs (ADR 0028).
    features = small(
        build_features(usecase=usecase, home=home, accepted_batch=validate.outputs["Output"]),
        memory="2G",
    )
    features.set_display_name("build-features")
    training_set = features.outputs["training_set"]
    runs = {}
    for family in FAMILIES:  # independent tasks: parallel on a cluster
        train = small(
            train_model(usecase=usecase, family=family, home=home, training_set=training_set),
            memory="4G",
        )
        train.set_display_name(f"train-{family}")
        evaluate = small(evaluate_model(usecase=usecase, run_id=train.output, home=home))
        evaluate.set_display_name(f"evaluate-{family}")
        runs[family] = evaluate.outputs["Output"]
    select = small(
        select_model(
            usecase=usecase,
            home=home,
            logistic_run=runs["logistic"],
            xgboost_run=runs["xgboost"],
            keras_run=runs["keras"],
        )
    )
    select.set_display_name("select-model")
    register = small(
        register_model(
            usecase=usecase,
            run_id=select.outputs["run_id"],
            model_uri=select.outputs["model_uri"],
            home=home,
            training_set=training_set,
        )
    )
    register.set_display_name("register-model")
    # Registration talks to the MLflow server on a cluster: a restart or a dropped connection
    # is worth two more tries before the run fails (kfp.local runs it once).
    register.set_retry(num_retries=2, backoff_duration="30s", backoff_factor=2.0)


def compile_to(out_dir: Path) -> Path:
    return compile_pipeline(training_pipeline, out_dir, "training.yaml")


if __name__ == "__main__":
    print(compile_to(Path(__file__).parent / "compiled"))
