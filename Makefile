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
DEB_PACKAGES := redis-server postgresql prometheus

.PHONY: help setup setup-serving lock run compile test test-slow lint schemas bench clean mlflow-ui serve

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

setup: .venv/.stamp .venv-serving/.stamp .make/deb ## Create both locked environments (idempotent)

setup-serving: .venv-serving/.stamp ## Only the serving environment

lock: .make/uv ## Re-resolve requirements/*.in into the lock files
	$(UV) pip compile --quiet requirements/pipeline.in -o requirements/pipeline.lock --python-version 3.11
	$(UV) pip compile --quiet requirements/serving.in -o requirements/serving.lock --python-version 3.11

run: setup ## Run the training pipeline locally with kfp.local (USECASE=taxi|credit)
	$(CLI) run --usecase $(USECASE)

compile: .venv/.stamp ## Compile every pipeline to pipelines/compiled/*.yaml
	$(CLI) compile

schemas: .venv/.stamp ## Regenerate schemas/*.pbtxt from the use-case specs
	$(CLI) schema build --usecase taxi
	$(CLI) schema build --usecase credit

lint: .venv/.stamp ## ruff
	.venv/bin/ruff check src components pipelines tests bench feature_repo

# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
define run_pytest
	$(PY) -m pytest $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc
endef

test: setup lint ## Lint and run the default test suite (excludes slow tests)
	$(call run_pytest,-m "not slow")

test-slow: setup ## Run the slow suites (bad-data corpus at scale, long pipelines)
	$(call run_pytest,-m slow)

bench: setup ## Benchmarks (ratios measured side by side): bench/*.py
	$(PY) bench/validation.py
	$(PY) bench/models.py

clean: ## Remove runtime state (.mlplatform); environments stay
	rm -rf .mlplatform

mlflow-ui: .venv/.stamp ## MLflow UI on http://127.0.0.1:5000 for the runs of `make run`
	.venv/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.mlplatform/mlflow/mlflow.db \
	  --host 127.0.0.1 --port 5000

ALIAS ?= challenger
PORT ?= 8080
serve: setup ## Serve USECASE's registry ALIAS (default challenger) on 127.0.0.1:PORT (after make run)
	$(SERVING_PY) -m mlplatform.serving.server --model-name $(USECASE) \
	  --model-uri models:/$(USECASE)-classifier@$(ALIAS) \
	  --tracking-uri sqlite:///$(CURDIR)/.mlplatform/mlflow/mlflow.db --port $(PORT)
