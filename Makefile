# The front door. `make help` lists the targets; `make run` and `make test` set everything up.
SHELL := /bin/bash
.DEFAULT_GOAL := help
USECASE ?= taxi
PY := .venv/bin/python
CLI := .venv/bin/mlplatform
SERVING_PY := .venv-serving/bin/python
# uv: the machine's, or the copy `make` installs with pip on first use.
UV = $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=
DEB_PACKAGES := redis-server postgresql prometheus prometheus-alertmanager
# The container engine of the image tests: docker when its daemon answers, else Debian's podman
# + runc + debootstrap, installed and configured by images/engine.sh (.make/engine).

.PHONY: help setup setup-serving lock run compile test test-unit test-slow lint schemas bench clean mlflow-ui serve canary

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

.make/uv:
	@mkdir -p .make
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
	  { echo "installing uv with pip"; python3 -m pip install --quiet 'uv==0.13.9'; }
	@touch $@

.venv/.stamp: requirements/pipeline.lock pyproject.toml .make/uv
	@test -x $(PY) || $(UV) venv --quiet --python 3.11 .venv
	@echo "syncing the pipeline environment (.venv) with requirements/pipeline.lock"
	VIRTUAL_ENV=.venv $(UV) pip sync --quiet requirements/pipeline.lock
	VIRTUAL_ENV=.venv $(UV) pip install --quiet --no-deps -e .
	@touch $@

.venv-serving/.stamp: requirements/serving.lock pyproject.toml .make/uv
	@test -x $(SERVING_PY) || $(UV) venv --quiet --python 3.11 .venv-serving
	@echo "syncing the serving environment (.venv-serving) with requirements/serving.lock"
	VIRTUAL_ENV=.venv-serving $(UV) pip sync --quiet requirements/serving.lock
	VIRTUAL_ENV=.venv-serving $(UV) pip install --quiet --no-deps -e .
	@touch $@

.make/deb: Makefile
	@mkdir -p .make
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

.make/engine: images/engine.sh
	@mkdir -p .make
	@bash images/engine.sh >/dev/null
	@touch $@

setup: .venv/.stamp .venv-serving/.stamp .make/deb ## Create both locked environments (idempotent)

setup-serving: .venv-serving/.stamp ## Only the serving environment

lock: .make/uv ## Re-resolve requirements/*.in into the lock files
	$(UV) pip compile --quiet requirements/pipeline.in -o requirements/pipeline.lock --python-version 3.11
	$(UV) pip compile --quiet requirements/serving.in -o requirements/serving.lock --python-version 3.11

run: setup ## Run the training pipeline locally with kfp.local (USECASE=taxi|credit)
	$(CLI) run --usecase $(USECASE)

compile: .venv/.stamp ## Compile every pipeline to pipelines/compiled/*.yaml
	$(CLI) compile

schemas: .venv/.stamp ## Regenerate schemas/*.pbtxt from every usecases/*.yaml (of $MLPLATFORM_PROJECT if set)
	@for f in $(or $(MLPLATFORM_PROJECT),.)/usecases/*.yaml; do \
	  $(CLI) schema build --usecase $$(basename $$f .yaml) || exit 1; done

lint: .venv/.stamp ## ruff
	.venv/bin/ruff check src components pipelines tests bench feature_repo

# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
define run_pytest
	$(PY) -m pytest $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc
endef

# --durations: the slowest tests are listed at the end, to keep the default run under budget.
test: setup .make/engine lint ## Lint and run the default test suite (excludes slow tests)
	$(call run_pytest,-m "not slow" --durations=25)

test-unit: .venv/.stamp ## Code tests in-process (tests/unit, not slow, not heavy): no servers, pipelines, CLI processes
	$(call run_pytest,tests/unit -m "not slow and not heavy")

test-slow: setup ## Run the slow suites (bad-data corpus at scale, long pipelines)
	$(call run_pytest,-m slow)

bench: setup ## Benchmarks (ratios measured side by side): bench/*.py
	$(PY) bench/validation.py
	$(PY) bench/gate_accuracy.py
	$(PY) bench/trigger_accuracy.py
	$(PY) bench/init_ranges.py --reps 1000
	$(PY) bench/fairness_gate.py --sets 1000
	$(PY) bench/models.py
	$(PY) bench/memory.py
	$(PY) bench/serving.py
	$(PY) bench/scoring.py

clean: ## Remove runtime state (.mlplatform); `make clean USECASE=x` only x's; environments stay
	@if [ "$(origin USECASE)" = "command line" ]; then \
	  echo "removing .mlplatform/$(USECASE) (other use cases stay)"; rm -rf .mlplatform/$(USECASE); \
	else rm -rf .mlplatform; fi

mlflow-ui: .venv/.stamp ## MLflow UI on http://127.0.0.1:5000 for the runs of `make run`
	.venv/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.mlplatform/mlflow/mlflow.db \
	  --host 127.0.0.1 --port 5000

ALIAS ?= challenger
PORT ?= 8080
WORKERS ?= 1
canary: setup ## Rehearse a release on loopback: a bad challenger rolled back, a good one promoted
	@test -f .mlplatform/mlflow/mlflow.db || $(CLI) run --usecase $(USECASE)
	$(CLI) canary demo --usecase $(USECASE)

serve: setup ## Serve USECASE's registry ALIAS (default challenger) on 127.0.0.1:PORT with WORKERS processes (after make run)
	$(SERVING_PY) -m mlplatform.serving.server --model-name $(USECASE) \
	  --model-uri models:/$(USECASE)-classifier@$(ALIAS) \
	  --tracking-uri sqlite:///$(CURDIR)/.mlplatform/mlflow/mlflow.db --port $(PORT) \
	  --workers $(WORKERS) --request-log $(CURDIR)/.mlplatform/$(USECASE)/monitoring/requests

# ---- Kubeflow on kind: images, cluster, submit, deploy (README "Kubeflow on kind") ----------
.PHONY: images run-containers base-image test-containers cluster-up submit deploy cluster-down
KIND_CONTEXT := kind-mlplatform
KFP_PORT ?= 8088
MLFLOW_PORT ?= 5055
# Stops with what to install when a tool is missing (none of them is a Debian package here).
define require_tools
	@for t in $(1); do command -v $$t >/dev/null 2>&1 && continue; \
	  case $$t in \
	    docker) hint="Docker Engine: https://docs.docker.com/engine/install/";; \
	    kind) hint="kind v0.25.0: go install sigs.k8s.io/kind@v0.25.0";; \
	    kubectl) hint="kubectl >= 1.31: https://kubernetes.io/docs/tasks/tools/";; \
	  esac; echo "error: $$t is not installed; install $$hint" >&2; exit 3; done
endef
# Runs $(2) while `kubectl port-forward $(1)` is up (stopped on exit, whatever happens).
define with_port_forward
	@kubectl --context $(KIND_CONTEXT) port-forward $(1) >/dev/null 2>&1 & pf=$$!; \
	trap "kill $$pf 2>/dev/null" EXIT; sleep 3; $(2)
endef

images: .venv/.stamp .make/engine ## Build the component + serving images with docker, else podman (first build: minutes)
	@# Loaded into the kind cluster too when it exists (`kind load docker-image`).
	$(CLI) cluster images $(if $(shell kind get clusters 2>/dev/null | grep -x mlplatform),--load)

run-containers: setup .make/engine ## make run with every task in the component image (builds it first)
	$(CLI) cluster images --only component
	$(CLI) run --usecase $(USECASE) --runner container

base-image: ## The offline base image (Debian bookworm + python 3.11 + uv) where no registry answers
	@bash images/base-image.sh

test-containers: setup .make/engine ## Only the image tests: built and run with the machine's engine
	$(call run_pytest,-m containers)

cluster-up: .venv/.stamp ## kind cluster + Kubeflow Pipelines + KServe + manifests/overlays/kind
	$(call require_tools,docker kind kubectl)
	$(CLI) cluster up

submit: compile ## Submit the training pipeline to KFP on kind, print the run's UI link
	$(call require_tools,kubectl)
	$(call with_port_forward,-n kubeflow svc/ml-pipeline-ui $(KFP_PORT):80,\
	  $(CLI) cluster submit --usecase $(USECASE) --host http://127.0.0.1:$(KFP_PORT))

DEPLOY_ALIAS ?= champion
CANARY ?=
deploy: .venv/.stamp ## KServe InferenceService of DEPLOY_ALIAS (champion) on kind; CANARY=5 rolls a canary
	$(call require_tools,kubectl)
	$(call with_port_forward,-n mlplatform svc/mlflow $(MLFLOW_PORT):5000,\
	  $(CLI) cluster deploy --usecase $(USECASE) --alias $(DEPLOY_ALIAS) \
	    $(if $(CANARY),--canary-percent $(CANARY)) --tracking-uri http://127.0.0.1:$(MLFLOW_PORT))

cluster-down: ## Delete the kind cluster (.mlplatform/kind, the home volume, stays)
	$(call require_tools,kind)
	$(CLI) cluster down

# ---- Monitoring: Prometheus on a running `make serve`, and the replay (README "Monitoring") --
.PHONY: monitor simulate monitor-once schedule drift-ui
MONITOR_PORT ?= 9090
DRIFT_FROM ?= 2015-06
monitor: .venv/.stamp ## Prometheus on 127.0.0.1:MONITOR_PORT scraping `make serve` (PORT), with the repo's rules
	@curl -sf -o /dev/null http://127.0.0.1:$(PORT)/metrics || \
	  echo "warning: nothing answers on 127.0.0.1:$(PORT)/metrics yet; start \`make serve\` (the target shows as down until then)" >&2
	$(CLI) monitor prometheus --server 127.0.0.1:$(PORT) --port $(MONITOR_PORT)

FAMILIES ?= logistic,xgboost,keras
monitor-once: setup ## The monitoring pipeline once (kfp.local) on `make serve`'s request log: drift, triggers, retrain, canary request
	$(CLI) monitor once --usecase $(USECASE) --families $(FAMILIES)

DRIFT_UI_PORT ?= 8000
drift-ui: .venv/.stamp ## Evidently UI on 127.0.0.1:DRIFT_UI_PORT: a drift snapshot per window judged by monitor-once
	.venv/bin/evidently ui --workspace $(CURDIR)/.mlplatform/$(USECASE)/monitoring/evidently \
	  --host 127.0.0.1 --port $(DRIFT_UI_PORT)

CRON ?= 0 0 * * * *
schedule: compile ## Schedule the monitoring pipeline on KFP on kind as a recurring run (CRON, KFP's 6 fields)
	$(call require_tools,kubectl)
	$(call with_port_forward,-n kubeflow svc/ml-pipeline-ui $(KFP_PORT):80,\
	  $(CLI) cluster schedule --usecase $(USECASE) --cron "$(CRON)" --families $(FAMILIES) \
	    --host http://127.0.0.1:$(KFP_PORT))

simulate: setup ## Replay taxi 2013-2016 month by month (drift x10 on fare from DRIFT_FROM; DRIFT_FROM=none): dashboard
	$(CLI) monitor simulate --drift-from $(DRIFT_FROM)

# ---- Notebooks: experimentation in Jupyter (README "Notebooks") -------------------------
.PHONY: notebooks notebooks-strip
NOTEBOOK_PORT ?= 8888
notebooks: .venv/.stamp ## Jupyter Lab on 127.0.0.1:NOTEBOOK_PORT over notebooks/, the pipeline env as kernel
	.venv/bin/jupyter lab --ip 127.0.0.1 --port $(NOTEBOOK_PORT) --no-browser \
	  --notebook-dir $(CURDIR)/notebooks

# Outputs, execution counts and cell timings go; the `parameters` tags and the kernelspec stay.
notebooks-strip: .venv/.stamp ## Clear outputs and execution counts of notebooks/*.ipynb before a commit
	.venv/bin/jupyter nbconvert --clear-output --inplace \
	  --ClearMetadataPreprocessor.enabled=True \
	  --ClearMetadataPreprocessor.preserve_cell_metadata_mask=tags \
	  --ClearMetadataPreprocessor.clear_notebook_metadata=False notebooks/*.ipynb

# ---- Spark: a standalone cluster on loopback for `--engine spark` (README "Spark") ---------
.PHONY: spark-up spark-down features-spark
SPARK_PORT ?= 7077
SPARK_UI_PORT ?= 8090
SPARK_MASTER ?= spark://127.0.0.1:$(SPARK_PORT)
spark-up: .venv/.stamp ## Spark standalone master + 2 workers (1 core / 2g each) on 127.0.0.1:SPARK_PORT
	$(PY) -m mlplatform.spark.cluster up --port $(SPARK_PORT) --webui-port $(SPARK_UI_PORT)

spark-down: .venv/.stamp ## Stop the cluster of `make spark-up` (only the processes it started)
	$(PY) -m mlplatform.spark.cluster down

features-spark: .venv/.stamp ## USECASE's feature tables computed on SPARK_MASTER (default: make spark-up's)
	$(CLI) features build --usecase $(USECASE) --engine spark --master $(SPARK_MASTER)
