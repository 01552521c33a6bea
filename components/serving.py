"""Serving components: batch scoring from a registered model."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def score_batch(
    usecase: str, source: str, home: str, model_alias: str, predictions: Output[Dataset]
) -> int:
    """Score a file with the registry alias's model; rows carry model and data versions."""
    from pathlib import Path

    import mlflow

    from mlplatform.jobs import load_usecase
    from mlplatform.serving.batch import score_file
    from mlplatform.tracking import registered_model_name, use_workspace

    spec = load_usecase(usecase)
    use_workspace(Path(home), spec.name)
    name = registered_model_name(spec.name)
    version = mlflow.MlflowClient().get_model_version_by_alias(name, model_alias).version
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    out = score_file(model, f"{name}/{version}", Path(source), Path(predictions.path))
    predictions.metadata.update(
        {"model_version": out.model_version, "data_version": out.data_version, "rows": out.rows}
    )
    return out.rows
