"""The platform's model server: a KServe `Model` around a registered MLflow pyfunc.

Runs in the serving environment. KServe supplies the protocols (v1 and the Open Inference
Protocol v2), health and readiness; this module adds request validation against the
signature, Prometheus metrics labelled by model version, and a loopback-by-default bind
(KServe 0.14 always binds 0.0.0.0, so the app is served by our own uvicorn).

    python -m mlplatform.serving.server --model-name taxi \\
        --model-uri models:/taxi-classifier@champion --tracking-uri sqlite:///.../mlflow.db
"""

from __future__ import annotations

import os

# Before numpy loads (kserve imports it): BLAS and OpenMP run one thread per process unless the
# operator sets these. A single-row prediction gains nothing from more, and the idle-spinning
# pool threads of several processes fight for the same cores: at 500 req/s on 2 cores the p99
# of two workers fell from 22 to 6 ms (bench/serving.py, ADR 0019).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

# The model, KServe and prometheus_client load inside `main`: with several workers the metrics
# folder must be set before prometheus_client is imported, and nothing heavy before the fork.
from mlplatform.serving import workers  # noqa: E402
from mlplatform.serving.process import add_bind_args, configure_logging, serve  # noqa: E402

log = logging.getLogger("mlplatform.serving")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="Serve a registered MLflow model over the KServe "
        "v1 and v2 REST protocols, with /metrics."
    )
    ap.add_argument("--model-name", required=True, help="Name in the URL: /v1/models/<name>")
    ap.add_argument(
        "--model-uri",
        required=True,
        help="models:/<registered>@<alias> or models:/<registered>/<version>",
    )
    ap.add_argument("--tracking-uri", default=None, help="MLflow tracking/registry URI")
    ap.add_argument(
        "--request-log",
        default=None,
        help="Log scored rows (JSON lines, rotating) under this folder "
        "(default: $MLPLATFORM_REQUEST_LOG_DIR; off when neither is set)",
    )
    ap.add_argument(
        "--request-log-sample",
        default=None,
        help="Share of requests logged, in (0, 1] (default $MLPLATFORM_REQUEST_LOG_SAMPLE or 1)",
    )
    ap.add_argument(
        "--feature-repo",
        default=None,
        metavar="DIR",
        help="Feast repository (a folder with feature_store.yaml, e.g. .mlplatform/taxi/feast, "
        "or the yaml itself): a request may then omit the model inputs its online feature "
        "views serve, and they are read by the entity keys the request carries (an entity key "
        "that is not a model input, like credit's id, is accepted and not passed to the model). "
        "A field the client sends, even null, wins over the store; a missing entity key is a "
        "400 naming it. The views are read at start (restart after `feast apply`); /metrics "
        "adds mlplatform_feature_lookup* (docs/decisions/0017)",
    )
    ap.add_argument(
        "--on-missing-entity",
        choices=["reject", "impute"],
        default="reject",
        help="An entity without an online row: 'reject' answers 422 naming the entity "
        "(default); 'impute' sends nulls, which the model imputes as for unmatched rows in "
        "training. Both count mlplatform_feature_lookup_misses_total",
    )
    ap.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="Server processes sharing the port (default 1; 'auto' = one per core). Each "
        "loads its own copy of the model; /metrics in any of them covers all of them",
    )
    add_bind_args(ap)
    args = ap.parse_args(argv)
    configure_logging()
    _request_log_config(ap, args)  # a bad setting is a usage error before anything starts
    if args.workers > 1:
        # gunicorn forks the workers before any of them loads a model (TensorFlow's and
        # OpenMP's threads do not survive a fork) and restarts one that dies.
        raise SystemExit(
            workers.serve_with_gunicorn(lambda: _loaded_app(ap, args), args.host, args.port,
                                        args.workers)
        )
    try:
        app = _loaded_app(ap, args)
    except ModelNotLoaded as exc:
        raise SystemExit(2) from exc
    serve(app, args.host, args.port)


class ModelNotLoaded(RuntimeError):
    """The model (or its feature repository) could not be loaded; the log says why."""


def _loaded_app(ap: argparse.ArgumentParser, args: argparse.Namespace):
    """The served model, loaded and checked, in its HTTP application (in each worker)."""
    from mlplatform.serving.app import build_app
    from mlplatform.serving.model import PlatformModel

    model = PlatformModel(args.model_name, args.model_uri, args.tracking_uri)
    model.request_log = _request_log(ap, args.request_log, args.request_log_sample)
    try:
        model.load()
    except Exception as exc:  # a server that cannot load must say why and exit non-zero
        log.error("cannot load %s: %s", args.model_uri, exc)
        raise ModelNotLoaded(str(exc)) from exc
    if args.feature_repo:
        model.online = _online(args.feature_repo, model, args.on_missing_entity)
    return build_app(model)


def _request_log_config(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from mlplatform.monitoring.requestlog import RequestLogConfig

    try:
        RequestLogConfig.from_env(args.request_log, args.request_log_sample)
    except ValueError as exc:
        ap.error(str(exc))


def _workers(value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--workers takes a number or 'auto', not {value!r}"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--workers must be at least 1, not {n}")
    return n


def _online(repo: str, model, on_missing: str):
    from mlplatform.serving.online import OnlineFeatures

    try:
        online = OnlineFeatures.open(repo, model.contract.names, on_missing)
    except Exception as exc:  # a lookup the operator asked for and cannot have: say why, exit
        log.error("cannot open the feature repository %s: %s", repo, exc)
        raise ModelNotLoaded(f"feature repository {repo}: {exc}") from exc
    log.info(
        "online lookup from %s (%s on a missing entity): %s", repo, on_missing, online.describe()
    )
    return online


def _request_log(ap: argparse.ArgumentParser, directory: str | None, sample: str | None):
    import atexit

    from mlplatform.monitoring.requestlog import RequestLog, RequestLogConfig

    try:
        config = RequestLogConfig.from_env(directory, sample)
    except ValueError as exc:
        ap.error(str(exc))
    if config is None:
        return None
    log_ = RequestLog(config)
    atexit.register(log_.close)  # the buffered tail reaches disk on a clean shutdown
    log.info("logging %.0f%% of requests under %s", 100 * config.sample_rate, config.directory)
    return log_


if __name__ == "__main__":
    main(sys.argv[1:])
