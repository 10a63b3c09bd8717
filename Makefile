# Oneiric Operator: every task a developer or CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER_DIR := .cache/cluster
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## install the package and test tools into .venv

.PHONY: binaries
binaries: ## build the pinned control plane, kubectl and helm once per machine (~10 min cold)
	bash hack/build-cluster-bins.sh

.PHONY: lint
lint: install ## ruff on everything, mypy --strict on the package
	$(VENV)/bin/ruff check operator tests hack bench
	$(VENV)/bin/mypy

.PHONY: test
test: install binaries lint ## lint, then unit and integration tests against a real local control plane
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: unit
unit: install ## unit tests only (no cluster)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

.PHONY: crds
crds: install ## regenerate crds/ from the pydantic models
	$(PY) -m oneiric_operator.api.crdgen --out crds --docs docs/crd-reference.md

.PHONY: bench
bench: install ## print the benchmark tables
	$(PY) bench/resolver_bench.py

.PHONY: cluster-up
cluster-up: install binaries ## start the local control plane in .cache/cluster (prints KUBECONFIG)
	$(PY) hack/cluster/localcluster.py up --dir $(CLUSTER_DIR)

.PHONY: cluster-down
cluster-down: ## stop exactly the processes cluster-up started
	$(PY) hack/cluster/localcluster.py down --dir $(CLUSTER_DIR)

.PHONY: cluster-status
cluster-status: ## show whether the local control plane processes are running
	$(PY) hack/cluster/localcluster.py status --dir $(CLUSTER_DIR)
