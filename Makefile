# One target per tier; `make test` is what CI runs (.ci/run).
UV_RUN := uv run --frozen
PYTEST := $(UV_RUN) pytest

.PHONY: bootstrap fetch lint typecheck licences test test-unit test-integration test-k8s test-e2e site clean-state

bootstrap:
	@scripts/bootstrap.sh

# Downloads everything the tests use that is not cached yet (the Kubernetes build included),
# printing each component's start, progress every few seconds, and end.
fetch: bootstrap
	$(UV_RUN) phee components fetch

# ruff, then the import rules (docs/architecture.md: layers, one adapter per external system).
lint: bootstrap
	$(UV_RUN) ruff check .
	$(UV_RUN) ruff format --check .
	$(UV_RUN) lint-imports --no-cache

typecheck: bootstrap
	$(UV_RUN) mypy

# Every Python package in the venv and every fetched artifact with its licence; fails on a refused
# or unknown one (docs/licences.md). The table goes to $PHEE_CACHE/licences/inventory.tsv.
licences: fetch
	$(UV_RUN) phee licences

# Unit tests read the FSPIOP OpenAPI documents (a pinned npm artifact), nothing else.
test-unit: bootstrap
	$(UV_RUN) phee components fetch api-snippets
	$(PYTEST) -m unit

test-integration: fetch
	$(PYTEST) -m integration

test-k8s: fetch
	$(PYTEST) -m k8s

test-e2e: fetch
	$(PYTEST) -m e2e

# The whole suite: quality gates first (fast), then every tier.
test: fetch lint typecheck licences
	$(PYTEST)

# The main job: the local multi-engine site, until Ctrl-C. `phee site up` fetches what the site
# runs (and only that: no Kubernetes build), printing its progress, before it starts anything.
# Options go in SITE_ARGS, e.g. `make site SITE_ARGS="--engines 3 --duration 60"`.
site: bootstrap
	$(UV_RUN) phee site up $(SITE_ARGS)

clean-state:
	$(UV_RUN) phee components stop
