# The serving image: the platform's model server (mlplatform.serving.server, KServe v1 and v2
# protocols, /metrics) in the serving environment pinned by requirements/serving.lock. No TFDV,
# Beam or kfp: it only loads an MLflow artifact and answers requests.
#
#   make images            # docker build -f images/serving.Dockerfile -t <SERVING_IMAGE> .
#
# On a cluster KServe's storage initializer copies the artifact to /mnt/models
# (manifests/base/serving/servingruntime.yaml passes --model-uri /mnt/models).
# No registry here: `make base-image` builds mlplatform/base:bookworm (Debian's python 3.11 +
# uv) offline and `make images` passes it. The default is a pinned tag (python:3.11-slim floats).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

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
    UV_NO_CACHE=${UV_NO_CACHE}

COPY requirements/serving.lock /tmp/serving.lock
RUN uv venv --python python3.11 /opt/venv && uv pip sync /tmp/serving.lock

WORKDIR /opt/mlplatform
COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
RUN uv pip install --no-deps . && python -c "import mlplatform.serving.server"

# A non-root user: the server needs no privileges, and KServe does not ask for any.
RUN useradd --uid 1000 --create-home serving
USER 1000
EXPOSE 8080
# The server binds loopback by default; in a pod it must listen on the pod's address.
ENTRYPOINT ["python", "-m", "mlplatform.serving.server", "--host", "0.0.0.0", "--port", "8080"]
