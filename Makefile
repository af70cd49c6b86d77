# ftrollout developer commands. `make test` and `make demo` work on a fresh machine:
# they create the venv and build/download everything else they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# `make plugin`: where the krew archive will be downloadable from, and extra build flags
# (e.g. PLUGIN_ARGS='--platform manylinux2014_aarch64 --python-version 3.12 --arch arm64').
KREW_URI_BASE ?= https://REPLACE-WITH-YOUR-RELEASES-URL
PLUGIN_ARGS ?=

.PHONY: venv test unit e2e lint fmt crd manifests demo tools bench bench-peers peers plugin chart clean

venv: $(STAMP)

# Three faces, three installs: the operator (`ftrollout[operator]`, all the image has), the kubectl
# plugin (`ftrollout[cli]`), and the development tooling (`ftrollout[dev]` + the separate
# `ftrollout-dev` distribution in dev/: local cluster, simulator, demo).
$(STAMP): pyproject.toml dev/pyproject.toml
	@echo "==> creating $(VENV) and installing ftrollout[operator,cli,dev] and ftrollout-dev"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -e '.[operator,cli,dev]' -e ./dev
	@touch $(STAMP)

# Everything the e2e tests need (control plane binaries, kubectl, helm, Prometheus).
tools: venv
	@if $(BIN)/python -c "import ftrollout_dev.localcluster" 2>/dev/null; then \
		$(BIN)/ftrollout-dev cluster build; \
	else echo "==> local cluster tooling not present yet; skipping"; fi

test: venv tools
	@echo "==> running all tests"
	@$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

unit: venv
	@$(BIN)/pytest tests/unit $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

e2e: venv tools
	@$(BIN)/pytest tests/e2e $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

lint: venv
	@echo "==> ruff check"
	@$(BIN)/ruff check operator dev tests
	@echo "==> ruff format --check"
	@$(BIN)/ruff format --check operator dev tests
	@echo "==> mypy --strict"
	@$(BIN)/mypy
	@echo "==> import-linter (layers: model < plan < shell/cli; probe stdlib-only)"
	@$(BIN)/lint-imports

fmt: venv
	@$(BIN)/ruff format operator dev tests
	@$(BIN)/ruff check --fix operator dev tests

# Regenerate the committed CRD from the pydantic models (and the chart/install copies).
crd: venv
	@$(BIN)/ftrollout crd > crds/freethreaded.dev_freethreadedrollouts.yaml
	@echo "wrote crds/freethreaded.dev_freethreadedrollouts.yaml"
	@$(MAKE) --no-print-directory manifests

# Render manifests/install.yaml from the chart (copying the generated CRD into it first).
manifests: venv tools
	@cp crds/freethreaded.dev_freethreadedrollouts.yaml charts/ftrollout/crds/
	@HELM=$$($(BIN)/python -c 'from ftrollout_dev.localcluster import Binaries; print(Binaries.locate().helm)'); \
	{ cat charts/ftrollout/install-header.yaml; \
	  "$$HELM" template ftrollout charts/ftrollout --namespace ftrollout-system --include-crds; \
	} > manifests/install.yaml
	@echo "wrote manifests/install.yaml"

# The kubectl plugin as one file (dist/kubectl-ftr, a zipapp with its dependencies: specific to
# this OS/CPU and Python minor version), its krew archive and a krew manifest (dist/ftr.yaml).
plugin: venv
	@$(BIN)/python -m ftrollout_dev.release plugin --uri-base '$(KREW_URI_BASE)' $(PLUGIN_ARGS)

# helm lint + helm package: dist/ftrollout-<version>.tgz, ready for `helm push ... oci://...`.
chart: venv tools
	@cp crds/freethreaded.dev_freethreadedrollouts.yaml charts/ftrollout/crds/
	@$(BIN)/python -m ftrollout_dev.release chart

demo: venv tools
	@$(BIN)/ftrollout-dev demo

bench: venv tools
	@if [ -f benchmarks/scale.py ]; then $(BIN)/python benchmarks/scale.py; \
	else echo "the scale benchmark is not written yet"; fi

# Argo Rollouts v1.10.2 built from its Go module (cached; ~6 min the first time).
peers: venv
	@$(BIN)/ftrollout-dev peers build

# ftrollout side by side with Argo Rollouts (benchmarks/peers/): 100 and 1000 paused canaries.
# PEERS_ARGS='--counts 100 --duration 120' for a shorter run.
PEERS_ARGS ?=
bench-peers: venv tools peers
	@$(BIN)/python benchmarks/peers/bench_peers.py $(PEERS_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis dist
