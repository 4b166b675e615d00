# ecgml — every target creates .venv and installs what it needs on a fresh machine.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast fuzz lint format docs docs-build ui server serve dashboard sweep bench clean lock
DOCS_PORT ?= 8000
UI_PORT = $(or $(PORT),5000)

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install ecgml (CPU torch first, then the locked stack)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

train: install  ## train + evaluate the default disorder (hypokalemia) on the synthetic cohort
	$(BIN)/python -m ecgml.train $(ARGS)

# Test worker processes (pytest-xdist): one per core, at most 4 (each holds torch, ~0.5 GB).
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

test: install  ## the whole test suite (slow end-to-end tests included), TEST_JOBS processes
	$(BIN)/python -m pytest -n $(TEST_JOBS) $(PYTEST_ARGS)

test-fast: install  ## the suite without the slow end-to-end tests
	$(BIN)/python -m pytest -n $(TEST_JOBS) -m "not slow" $(PYTEST_ARGS)

fuzz: install  ## long fuzz + fault run (thousands of cases, train kill included; outside CI's budget)
	ECGML_FUZZ_PROFILE=long $(BIN)/python -m pytest tests/fuzz -p no:cacheprovider $(PYTEST_ARGS)

lint: install  ## ruff check + format check + the layer contracts (lint-imports) + types (mypy)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

format: install  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: install  ## the documentation site on http://127.0.0.1:8000 (DOCS_PORT=…; rebuilt as docs/ changes)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict -a 127.0.0.1:$(DOCS_PORT)

docs-build: install  ## build the documentation site into site/ (strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

ui: install  ## MLflow UI on http://127.0.0.1:5000 over ./mlruns (PORT=… for another port)
	@mkdir -p mlruns/artifacts
	@test "$(UI_PORT)" = 5000 || echo "links ecgml prints: export ECGML_UI_URL=http://127.0.0.1:$(UI_PORT)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui \
		--backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts \
		--host 127.0.0.1 --port $(UI_PORT) --workers 1

# `make server`: a team's MLflow tracking server, its runs in PostgreSQL (ECGML_DB_URI), its
# artifacts proxied into SERVER_ARTIFACTS (a local folder standing for the object store; any
# s3://, gs://, wasbs:// URI works the same). Clients: MLFLOW_TRACKING_URI=http://127.0.0.1:5005
ECGML_DB_URI ?= postgresql+psycopg://mlflow:mlflow@127.0.0.1:5432/mlflow
SERVER_ARTIFACTS ?= $(CURDIR)/mlruns/server-artifacts
SERVER_PORT ?= 5005

server: install  ## MLflow tracking server on http://127.0.0.1:5005 over PostgreSQL (ECGML_DB_URI)
	@case "$(SERVER_ARTIFACTS)" in *://*) ;; *) mkdir -p "$(SERVER_ARTIFACTS)" ;; esac
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server \
		--backend-store-uri "$(ECGML_DB_URI)" \
		--artifacts-destination "$(SERVER_ARTIFACTS)" \
		--host 127.0.0.1 --port $(SERVER_PORT) --workers 1

DISORDER ?= hypokalemia
SERVE_PORT ?= 5001
MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlruns/mlflow.db

serve: install  ## REST API of the DISORDER champion on http://127.0.0.1:5001 (POST /invocations)
	MLFLOW_TRACKING_URI="$(MLFLOW_TRACKING_URI)" \
		$(BIN)/python -m ecgml.serve model_uri=models:/ecgml-$(DISORDER)@champion port=$(SERVE_PORT)

dashboard: install  ## optuna-dashboard on http://127.0.0.1:8080 over the sweeps' mlruns/optuna.db (PORT=…)
	$(BIN)/optuna-dashboard sqlite:///$(CURDIR)/mlruns/optuna.db --host 127.0.0.1 --port $(or $(PORT),8080)

sweep: install  ## a 20-trial pruned Optuna sweep (hypokalemia) on the synthetic cohort
	$(BIN)/python -m ecgml.train -m hparams_search=cnn1d disorder=hypokalemia $(ARGS)

bench: install  ## training/inference throughput benchmark (figures for docs/benchmarks.md)
	$(BIN)/python experiments/bench_train.py

lock:  ## refresh requirements.lock from the current .venv
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

clean:  ## remove caches and build leftovers (keeps .venv and mlruns)
	rm -rf .cache .pytest_cache .ruff_cache build dist site *.egg-info outputs multirun
