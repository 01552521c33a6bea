# The component image: every KFP task of pipelines/ runs in it on a cluster (base_image of the
# components, components.COMPONENT_IMAGE). It holds the pipeline environment, exactly as
# requirements/pipeline.lock pins it, plus this repository's package, use cases and schemas.
#
#   make images            # docker build -f images/component.Dockerfile -t <COMPONENT_IMAGE> .
#
# Build context: the repository root (images/.dockerignore keeps state and venvs out).
# No registry here: `make base-image` builds mlplatform/base:bookworm (Debian's python 3.11 +
# uv) offline and `make images` passes it. The default is a pinned tag (python:3.11-slim floats).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

# uv installs the lock as pinned (no resolver run at build time); version as in the Makefile.
ARG UV_VERSION=0.13.9
RUN command -v uv >/dev/null || pip install --no-cache-dir "uv==${UV_VERSION}"

# `make images` on podman mounts the host's uv cache at /uv-cache and sets UV_NO_CACHE=0: the
# lock then installs from wheels already on the machine, and the mount stays out of the layer.
ARG UV_NO_CACHE=1
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    UV_CACHE_DIR=/uv-cache \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=${UV_NO_CACHE} \
    MLPLATFORM_REPO_ROOT=/opt/mlplatform

# The lock first and alone: this layer (about 3.8 GB) is rebuilt only when the pins change.
COPY requirements/pipeline.lock /tmp/pipeline.lock
RUN uv venv --python python3.11 /opt/venv && uv pip sync /tmp/pipeline.lock

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
