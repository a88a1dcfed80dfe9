# The two README commands: `make demo` and `make test`. Everything else is a helper.
# Only Python and pip are assumed: uv is installed on first use.

PYTHON ?= python3
UV := $(PYTHON) -m uv
export UV_PYTHON ?= $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
MLFLOW_PORT ?= 5000
DAGSTER_PORT ?= 3000

.PHONY: demo demo-stop dev test lint bench sync uv

uv:
	@$(UV) --version >/dev/null 2>&1 || { echo "==> installing uv"; \
	  $(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user uv; }

sync: uv
	@echo "==> installing dagma and its dev tools from uv.lock"
	@$(UV) sync --frozen --quiet

## Local MLflow server (SQLite, proxied artifacts under .mlflow-local/), materialize train_model_stub, print the run.
demo: sync
	@$(UV) run --frozen python -m dagma.demo --port $(MLFLOW_PORT)

demo-stop: sync
	@$(UV) run --frozen python -m dagma.demo --stop

## dagster dev plus the MLflow UI, for clicking around.
dev: sync
	@$(UV) run --frozen python -m dagma.demo --port $(MLFLOW_PORT) --serve-only
	@mkdir -p .dagster-home
	@MLFLOW_USE_TRACKING=true MLFLOW_TRACKING_URI=http://127.0.0.1:$(MLFLOW_PORT) \
	  DAGSTER_UI_URL=http://127.0.0.1:$(DAGSTER_PORT) DAGSTER_HOME=$(CURDIR)/.dagster-home \
	  $(UV) run --frozen dagster dev -m dagma.definitions -p $(DAGSTER_PORT)

## The whole suite. CI=true turns every "tool missing" skip into a failure.
test: sync
	@$(UV) run --frozen ruff check src tests benchmarks
	@$(UV) run --frozen pytest -v

lint: sync
	@$(UV) run --frozen ruff check src tests benchmarks
	@$(UV) run --frozen ruff format --check src tests benchmarks

bench: sync
	@$(UV) run --frozen python -m benchmarks
