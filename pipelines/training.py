"""The training pipeline (its first stage so far: ingest -> validate -> features).

`python -m pipelines.training` compiles it to pipelines/compiled/training.yaml.
"""

from pathlib import Path

from kfp import compiler, dsl

from components.data import build_features, ingest_data, validate_data
from pipelines.resources import small

PIPELINE_NAME = "mlplatform-training"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Raw batch to validated, versioned Feast features (then training, later).",
)
def training_pipeline(usecase: str = "taxi", source: str = "", home: str = "/data/mlplatform"):
    ingest = small(ingest_data(usecase=usecase, source=source, home=home))
    ingest.set_display_name("ingest-data")
    validate = small(validate_data(usecase=usecase, batch_id=ingest.output, home=home))
    validate.set_display_name("validate-data")
    features = small(
        build_features(usecase=usecase, home=home, accepted_batch=validate.outputs["Output"]),
        memory="4G",
    )
    features.set_display_name("build-features")


def compile_to(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "training.yaml"
    compiler.Compiler().compile(training_pipeline, str(path))
    return path


if __name__ == "__main__":
    print(compile_to(Path(__file__).parent / "compiled"))
