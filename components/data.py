"""Data supply chain components: ingest, validate, build features."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest_data(usecase: str, source: str, home: str) -> str:
    """Store a raw batch content-addressed and record its data version; returns the batch id."""
    from pathlib import Path

    from mlplatform.jobs.data import ingest_job

    return ingest_job(usecase, Path(source), Path(home))


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def validate_data(
    usecase: str, batch_id: str, home: str, report: Output[Artifact], view: Output[HTML]
) -> str:
    """The TFDV gate: accept the batch, or quarantine it whole and fail the run. `view` shows
    the verdict, the anomalies and TFDV's statistics of the batch."""
    from pathlib import Path

    from mlplatform.jobs.data import validate_job

    return validate_job(usecase, batch_id, Path(home), Path(report.path), Path(view.path))


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def build_features(
    usecase: str, home: str, accepted_batch: str, training_set: Output[Dataset]
) -> str:
    """Feast: offline tables from accepted batches, apply, materialize, training set."""
    from pathlib import Path

    from mlplatform.jobs.data import features_job

    build = features_job(usecase, Path(home), Path(training_set.path))
    training_set.metadata.update(build.to_dict())
    return str(build.rows)
