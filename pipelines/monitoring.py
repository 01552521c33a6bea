"""The monitoring pipeline: judge the traffic logged since the last run, retrain when a trigger
asks (the training pipeline's stages from the feature store on), end with a canary request.

Run once with kfp.local (`make monitor-once`), or compiled as a Kubeflow recurring run
(`mlplatform cluster schedule`). `python -m pipelines.monitoring` compiles it to
pipelines/compiled/monitoring.yaml.
"""

from pathlib import Path

from kfp import dsl

from components.monitoring import (
    register_retrained,
    request_canary,
    retrain_candidate,
    retrain_features,
    watch_traffic,
)
from pipelines.compiling import compile_pipeline
from pipelines.resources import small

PIPELINE_NAME = "mlplatform-monitoring"
FAMILIES = ("logistic", "xgboost", "keras")


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Drift, confidence, delayed-label quality and KPI of the served traffic since "
    "the last run; retraining triggers; when one fires, features, candidates, selection, "
    "registration with the battery and the champion-challenger gate, and a canary request.",
)
def monitoring_pipeline(
    usecase: str = "taxi",
    home: str = "/data/mlplatform",
    request_log: str = "",  # "": <home>/<usecase>/monitoring/requests (the payload logger's)
    families: str = "logistic,xgboost,keras",
    min_rows: int = 100,
    new_labels: int = 5000,
    drift_windows: int = 1,
    canary_percent: int = 5,
):
    watch = small(
        watch_traffic(
            usecase=usecase,
            home=home,
            request_log=request_log,
            min_rows=min_rows,
            new_labels=new_labels,
            drift_windows=drift_windows,
        )
    )
    watch.set_display_name("watch-traffic")
    retrain = watch.outputs["retrain"]
    features = small(retrain_features(usecase=usecase, home=home, retrain=retrain), memory="2G")
    features.set_display_name("retrain-features")
    training_set = features.outputs["training_set"]
    runs = {}
    for family in FAMILIES:
        task = small(
            retrain_candidate(
                usecase=usecase,
                family=family,
                home=home,
                retrain=retrain,
                families=families,
                training_set=training_set,
            ),
            memory="4G",
        )
        task.set_display_name(f"retrain-{family}")
        runs[family] = task.output
    register = small(
        register_retrained(
            usecase=usecase,
            home=home,
            retrain=retrain,
            logistic_run=runs["logistic"],
            xgboost_run=runs["xgboost"],
            keras_run=runs["keras"],
            training_set=training_set,
        )
    )
    register.set_display_name("register-retrained")
    register.set_retry(num_retries=2, backoff_duration="30s", backoff_factor=2.0)
    canary = small(
        request_canary(
            usecase=usecase,
            home=home,
            version=register.outputs["version"],
            gate=register.outputs["gate"],
            canary_percent=canary_percent,
        )
    )
    canary.set_display_name("request-canary")


def compile_to(out_dir: Path) -> Path:
    return compile_pipeline(monitoring_pipeline, out_dir, "monitoring.yaml")


if __name__ == "__main__":
    print(compile_to(Path(__file__).parent / "compiled"))
