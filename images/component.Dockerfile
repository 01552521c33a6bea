# The component image: every KFP task of pipelines/ runs in it on a cluster (base_image of the
# components, components.COMPONENT_IMAGE). It holds the pipeline environment, exactly as
# requirements/pipeline.lock pins it, plus this repository's package, use cases and schemas.
#
#   make images            # docker build -f images/component.Dockerfile -t <COMPONENT_IMAGE> .
#
# Build context: the repository root (images/.dockerignore keeps state and venvs out).
FROM python:3.11-slim

# uv installs the lock as pinned (no resolver run at build time); version as in the Makefile.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    UV_NO_CACHE=1 \
    MLPLATFORM_REPO_ROOT=/opt/mlplatform

# The lock first and alone: this layer (about 3.8 GB) is rebuilt only when the pins change.
COPY requirements/pipeline.lock /tmp/pipeline.lock
RUN uv venv --python /usr/local/bin/python3.11 /opt/venv \
    && uv pip sync /tmp/pipeline.lock

WORKDIR /opt/mlplatform
COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
# Read at run time through MLPLATFORM_REPO_ROOT: the spec is the only place that knows columns.
COPY usecases ./usecases
COPY schemas ./schemas
COPY feature_repo ./feature_repo
# Alert and rollback rules (mlplatform.monitoring reads them under the repo root).
COPY monitoring ./monitoring
# Not editable: the image must not depend on a checkout being mounted.
RUN uv pip install --no-deps . && python -c "import mlplatform, components, pipelines, kfp"

# KFP starts components with `python3 -m kfp.dsl.executor_main`; PATH makes that this venv.
# Pipeline pods mount the shared home volume at /data (pipelines/resources.py).
CMD ["python3", "-m", "mlplatform.cli", "--help"]
