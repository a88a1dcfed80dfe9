# The two README commands: `make demo` and `make test`. Everything else is a helper.
# Only Python and pip are assumed: uv is installed on first use.

PYTHON ?= python3
# The interpreter uv is installed beside; a make started by `make test` inherits it.
export UV_PYTHON ?= $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
# uv on PATH first: with a virtualenv activated (or under `uv run`), python3 is the venv's,
# which has neither uv nor pip. Else the one pip installs beside UV_PYTHON (target uv).
UV := $(or $(shell command -v uv 2>/dev/null),$(UV_PYTHON) -m uv)
MLFLOW_PORT ?= 5000
DAGSTER_PORT ?= 3000
# `make demo STORE=sqlite`: no server, a local SQLite store under .mlflow-local/local-store/.
STORE ?= server
# The repository (this Makefile's directory), so `make -f path/to/Makefile` works from anywhere.
PROJECT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

.PHONY: demo demo-stop dev test test-local test-cluster soak lint bench sync uv

uv:
	@$(UV) --version >/dev/null 2>&1 || { echo "==> installing uv"; \
	  $(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user uv; }

## uv's own output is the progress: the first run downloads and installs ~170 packages.
## Silent when the environment already matches uv.lock (`uv sync --check`), as on every later run.
sync: uv
	@$(UV) sync --project $(PROJECT) --frozen --check --quiet 2>/dev/null || { \
	  echo "==> installing dagma and its dev tools from uv.lock (the first time takes a few minutes)"; \
	  $(UV) sync --project $(PROJECT) --frozen; }

## Local MLflow server (SQLite, proxied artifacts under .mlflow-local/port-$(MLFLOW_PORT)/), materialize
## train_model_stub, print the run. State goes under the directory make runs in (normally the
## repository): one directory per MLflow port, one Dagster instance per mode under .dagster-home/.
demo: sync
	@$(UV) run --project $(PROJECT) --frozen python -m dagma.dev.demo --port $(MLFLOW_PORT) --store $(STORE)

## Every MLflow server make demo or make dev started here (all ports).
demo-stop: sync
	@$(UV) run --project $(PROJECT) --frozen python -m dagma.dev.demo --stop

## The MLflow server plus dagster dev, for clicking around; Ctrl-C (or SIGINT/SIGTERM to the
## process group) stops both. It prints the dagma doctor / dagma verify lines for its ports.
dev: sync
	@$(UV) run --project $(PROJECT) --frozen python -m dagma.dev.demo --dev \
	  --port $(MLFLOW_PORT) --dagster-port $(DAGSTER_PORT)

.PHONY: demo-training

## The training example (dagma.examples.training, the `training` extra) against make demo's server
## on MLFLOW_PORT: train, register, check, promote, score; print the version, alias and metrics.
## BAD=1 trains a model the check refuses: the run stops at the check and the alias stays.
demo-training: sync
	@$(UV) run --project $(PROJECT) --frozen --extra training python -m dagma.examples.training.demo \
	  --port $(MLFLOW_PORT) $(if $(filter 1 true yes,$(BAD)),--bad)

## The whole suite. CI=true turns every "tool missing" skip into a failure. Two pytest runs:
## everything that needs no cluster, then tests/cluster (which brings the cluster up unless it
## runs), so that .ci/run can build the cluster's binaries meanwhile. Both always run; make
## fails if either does. Exit 5 (nothing collected, e.g. a -k that matches one half only) is
## no failure. PYTEST_ARGS goes to both: make test PYTEST_ARGS='-k parent'.
test: sync
	@status=0; \
	$(MAKE) --no-print-directory test-local || status=1; \
	$(MAKE) --no-print-directory test-cluster || status=1; \
	exit $$status

## ruff, then every test outside tests/cluster.
test-local: sync
	@$(UV) run --frozen ruff check src tests benchmarks localcluster charts
	@$(UV) run --frozen pytest -v --ignore=tests/cluster $(PYTEST_ARGS) || [ $$? -eq 5 ]

## tests/cluster: the real local cluster (started here and stopped after, unless it runs).
test-cluster: sync
	@$(UV) run --frozen pytest -v tests/cluster $(PYTEST_ARGS) || [ $$? -eq 5 ]

## Heavier variants of the reliability load and fault tests (DAGMA_SOAK=1: tests/support/soak.py).
soak: sync
	@DAGMA_SOAK=1 $(UV) run --frozen pytest -v -s tests/reliability/test_load.py \
	  tests/reliability/test_server_faults.py

lint: sync
	@$(UV) run --frozen ruff check src tests benchmarks localcluster charts
	@$(UV) run --frozen ruff format --check src tests benchmarks localcluster charts

bench: sync
	@$(UV) run --frozen python -m benchmarks

.PHONY: chart-docs

## The values tables of charts/*/README.md, written from the `## @param` lines of each values.yaml.
chart-docs: sync
	@$(UV) run --frozen python charts/values_tables.py

.PHONY: cluster-up cluster-down cluster-binaries

## A real single-node Kubernetes (binaries built from pinned Go modules, cached in
## ~/.cache/dagma/cluster); kubeconfig in .cluster/kubeconfig, helm and kubectl in .cluster/bin.
cluster-up: sync
	@$(UV) run --frozen python -m localcluster up

## Only build the cluster's binaries into the cache (Go, no root); .ci/run runs this in the
## background while the suites that need no cluster run.
cluster-binaries: sync
	@$(UV) run --frozen python -m localcluster build

## Stop every process of the cluster and remove its interfaces and firewall rules (keeps the cache).
cluster-down: sync
	@$(UV) run --frozen python -m localcluster down
