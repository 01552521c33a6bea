"""Submit a compiled pipeline to Kubeflow Pipelines: upload it (a new version when the
compiled YAML changed), create a run, and return the link to it in the KFP UI."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "http://127.0.0.1:8080"  # `kubectl port-forward svc/ml-pipeline-ui 8080:80`
EXPERIMENT = "mlplatform"
CLUSTER_SOURCE_ROOT = "/data/source"  # where `cluster up` stages ../shared/data (pods' view)


@dataclass(frozen=True)
class Submitted:
    pipeline_id: str
    version_id: str
    version_name: str
    run_id: str
    url: str


def version_name(pipeline_name: str, package: Path) -> str:
    """Named by content: the same compiled YAML is the same version, however often submitted."""
    digest = hashlib.sha256(package.read_bytes()).hexdigest()[:12]
    return f"{pipeline_name}-{digest}"


def run_url(host: str, run_id: str) -> str:
    """The KFP UI page of a run (what kfp.Client prints, without its HTML)."""
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def cluster_source(spec_source_path: str) -> str:
    """The pods' path of a use case's shipped source file (staged by `cluster up`)."""
    parts = Path(spec_source_path).parts
    if "shared" in parts and parts[parts.index("shared") + 1 : parts.index("shared") + 2] == (
        "data",
    ):
        rel = Path(*parts[parts.index("shared") + 2 :])
        return f"{CLUSTER_SOURCE_ROOT}/{rel.as_posix()}"
    raise ValueError(
        f"source.path {spec_source_path!r} is not under ../shared/data, which `cluster up` "
        "stages: copy the file under .mlplatform/kind/source/ and pass --source "
        f"{CLUSTER_SOURCE_ROOT}/<file>"
    )


def submit(
    package: Path,
    pipeline_name: str,
    params: dict,
    *,
    host: str = DEFAULT_HOST,
    experiment: str = EXPERIMENT,
) -> Submitted:
    """Upload `package` (pipeline, or a new version of it) and start a run with `params`."""
    client, pipeline_id, version_id, version, experiment_id = _prepare(
        host, package, pipeline_name, experiment
    )
    run = client.run_pipeline(
        experiment_id=experiment_id,
        job_name=f"{pipeline_name} {params.get('usecase', '')}".strip(),
        params=params,
        pipeline_id=pipeline_id,
        version_id=version_id,
    )
    return Submitted(pipeline_id, version_id, version, run.run_id, run_url(host, run.run_id))


def _find_version(client, pipeline_id: str, name: str) -> str | None:
    token = ""
    while True:
        page = client.list_pipeline_versions(pipeline_id, page_token=token, page_size=100)
        for v in page.pipeline_versions or []:
            if v.display_name == name:
                return v.pipeline_version_id
        token = page.next_page_token
        if not token:
            return None


def _prepare(host: str, package: Path, pipeline_name: str, experiment: str):
    """(client, pipeline id, version id, version name, experiment id): `package` uploaded unless
    KFP has it, and the experiment (the existing one when there is one)."""
    import kfp

    client = kfp.Client(host=host)
    pipeline_id, version_id, version = _upload(client, package, pipeline_name)
    experiment_id = client.create_experiment(experiment).experiment_id
    return client, pipeline_id, version_id, version, experiment_id


def _upload(client, package: Path, pipeline_name: str) -> tuple[str, str, str]:
    """(pipeline id, version id, version name) of `package`, uploaded unless KFP has it."""
    version = version_name(pipeline_name, package)
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(package), pipeline_name=pipeline_name)
        pipeline_id = pipeline.pipeline_id
        versions = client.list_pipeline_versions(pipeline_id).pipeline_versions or []
        # The first upload creates a version named like the pipeline: name it by content too.
        return pipeline_id, versions[0].pipeline_version_id, versions[0].display_name
    version_id = _find_version(client, pipeline_id, version)
    if version_id is None:
        created = client.upload_pipeline_version(
            str(package), pipeline_version_name=version, pipeline_id=pipeline_id
        )
        version_id = created.pipeline_version_id
    return pipeline_id, version_id, version


def check_cron(cron: str) -> str:
    """KFP's cron has six fields, seconds first ("0 0 * * * *": hourly); a five-field Unix cron
    is the usual mistake, so it is named."""
    fields = cron.split()
    if len(fields) == 5:
        raise ValueError(
            f"cron {cron!r} has 5 fields; Kubeflow Pipelines wants 6, seconds first: "
            f"'0 {cron}'"
        )
    if len(fields) != 6:
        raise ValueError(f"cron {cron!r}: expected 6 fields (seconds minutes hours day month "
                         "weekday), e.g. '0 0 * * * *' for hourly")
    return cron


@dataclass(frozen=True)
class Scheduled:
    recurring_run_id: str
    version_name: str
    cron: str
    url: str


def schedule(
    package: Path,
    pipeline_name: str,
    params: dict,
    cron: str,
    *,
    host: str = DEFAULT_HOST,
    experiment: str = EXPERIMENT,
) -> Scheduled:
    """A recurring run of `package` on `cron`: one run at a time (a monitoring run reads from
    where the previous stopped, so two at once would judge the same rows), no catch-up of
    missed periods (the next run reads everything since the last anyway)."""
    check_cron(cron)
    client, pipeline_id, version_id, version, experiment_id = _prepare(
        host, package, pipeline_name, experiment
    )
    job = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=f"{pipeline_name} {params.get('usecase', '')} schedule".strip(),
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        params=params,
        pipeline_id=pipeline_id,
        version_id=version_id,
    )
    rid = job.recurring_run_id
    return Scheduled(rid, version, cron, f"{host.rstrip('/')}/#/recurringrun/details/{rid}")
