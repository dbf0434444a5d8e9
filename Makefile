# Orchestrator API - developer entry points. `make help` lists them.
# `make run` and `make test` do the whole set-up on a fresh machine (venv + deps).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.requirements.stamp
IMAGE  ?= morningai-orchestrator-api
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test test-slow lint format bench bench-percall bench-hooks bench-scale docker-build image-test clean distclean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(STAMP) ## create .venv and install requirements-dev.txt (again only when it changes)

# The stamp is newer than both requirements files once they are installed, so pip runs
# only on a fresh clone or after a requirements change.
$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required; run: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

run: venv ## start the service on 127.0.0.1:8000 with its own Redis (PORT, BIND_HOST, REDIS_PORT); writes .env once
	bash scripts/run.sh

test: venv ## the test suite but the tests marked slow (extra arguments: make test PYTEST_ARGS="-k auth")
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: venv ## the slow fault-injection, fail-over, browser and fuzz tests (CI runs them after make test)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: venv ## ruff lint + format check, hadolint on the Dockerfile
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

format: venv ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv ## wrk against the service and a Flask + PING ceiling it starts itself, then Redis work per request
	@test -f bench/run.sh || { echo "bench/run.sh not found" >&2; exit 1; }
	bash bench/run.sh
	$(BIN)/python -m bench.commands

bench-percall: venv ## CPU (or, with ARGS=--callgrind, instructions) per request by scenario; ARGS="--against DIR"
	$(BIN)/python -m bench.percall $(ARGS)

bench-hooks: venv ## what each request hook costs: app CPU without it, in turn (ARGS="get health publish")
	$(BIN)/python -m bench.hooks $(ARGS)

bench-scale: venv ## load 1,000,000 tasks into a private Redis, then time listings, replay, create, claim (TASKS=N)
	@mkdir -p bench/results
	.venv/bin/python -m bench.scale --tasks $${TASKS:-1000000}

# podman needs --format docker, or it drops the HEALTHCHECK (the OCI format has none).
docker-build: ## build the production image (docker, else podman)
	@if command -v docker >/dev/null 2>&1; then docker build -t $(IMAGE) .; \
	else podman build --format docker -t $(IMAGE) .; fi

image-test: ## build the image and run it against a local Redis (root, podman; scripts/image-test.sh)
	IMAGE=$(IMAGE) bash scripts/image-test.sh

clean: ## remove caches and the local Redis data (.run/); keeps .venv and .env
	rm -rf .run .pytest_cache .ruff_cache .hypothesis bench/results
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean ## clean, and also remove .venv (never .env: it holds your secrets)
	rm -rf $(VENV)
