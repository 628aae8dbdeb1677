# wraplab — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TOX := $(VENV)/bin/tox
STAMP := $(VENV)/.wraplab-stamp

.DEFAULT_GOAL := help
.PHONY: help host-deps venv demo demo-local test unit harness labs integration selftest lint bench stress docker-up images doctor clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# tox-uv: tox makes its environments with uv (about 5 s each instead of 20 s with pip).
$(STAMP): ref/pyproject.toml harness/pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q tox tox-uv -e ./ref -e './harness[test]'
	touch $@

venv: $(STAMP) ## create .venv with tox, wrapref and wraplab installed

host-deps: ## install what this host lacks (docker.io, debootstrap, acl, setpriv, python3-venv, chromium; root)
	@bash scripts/host-deps.sh

# demo runs what can run: a missing package or Docker engine is said in one line, and the
# matrix then runs in the local lab alone (--lab auto falls back, and the reports say so).
demo: ## the main job: every attack against every profile, in the Docker and local labs; verdict table
	@bash scripts/host-deps.sh || echo "make demo: going on with what is here"
	@$(MAKE) --no-print-directory $(STAMP)
	@bash containers/docker-up.sh || echo "make demo: no Docker engine can be had here; the matrix runs in the local lab"
	$(VENV)/bin/wraplab matrix --lab auto --lab local --json reports/matrix.json --junit reports/matrix.xml --markdown reports/matrix.md

demo-local: $(STAMP) ## one owner/intruder exchange against the reference server on this host (root), no Docker
	$(VENV)/bin/python scripts/demo.py

test: ## run the tests: unit, harness, labs, integration (through tox), with their set-up
	@bash scripts/host-deps.sh || echo "make test: going on with what is here; tests that need the missing parts skip (and fail when CI is set)"
	@$(MAKE) --no-print-directory $(STAMP)
	@bash containers/docker-up.sh || echo "make test: no Docker engine can be had here; the Docker lab's tests skip (and fail when CI is set)"
	$(TOX) -e unit,harness,labs,integration

unit: $(STAMP) ## reference server unit tests only (no Docker)
	$(TOX) -e unit

harness: $(STAMP) ## harness tests without a lab: CLI, reports, CI files (tox -e harness)
	$(TOX) -e harness

labs: host-deps $(STAMP) docker-up ## lab tests (Docker and local)
	$(TOX) -e labs

integration: host-deps $(STAMP) docker-up ## the verdict matrix as tests (tox -e integration; JUnit and JSON in reports/)
	$(TOX) -e integration

# selftest: each rule of the hardened server weakened on its own in a scratch copy; some cell
# must turn vulnerable (the controls, unweakened, defended). Exit 1 when one is not caught
# (but for those docs/rules.md names as known uncaught).
selftest: host-deps $(STAMP) docker-up ## weaken one rule at a time: some cell must turn vulnerable (local and Docker labs)
	@mkdir -p reports
	$(VENV)/bin/wraplab selftest --lab local --control --json reports/selftest-local.json
	$(VENV)/bin/wraplab selftest --lab docker --control --json reports/selftest-docker.json

lint: $(STAMP) ## ruff (and actionlint)
	$(TOX) -e lint

bench: $(STAMP) ## wrapref and the flooder against C anchors built from bench/native (ratios)
	$(VENV)/bin/python scripts/bench_ref.py

stress: host-deps $(STAMP) docker-up ## the race-prone cells 20 times over under a CPU burner (REPEAT=N to change)
	$(VENV)/bin/python scripts/stress_races.py --repeat $(or $(REPEAT),20)

docker-up: ## make a Docker engine reachable (install docker.io and start dockerd if needed)
	@bash containers/docker-up.sh

images: host-deps $(STAMP) docker-up ## build the lab images (bootstraps the Debian base images offline if missing)
	$(VENV)/bin/wraplab images

doctor: $(STAMP) ## say which labs are usable here, and why not
	$(VENV)/bin/wraplab doctor

clean: ## remove what dead wraplab runs left (by label), .tox and caches
	-@if [ -x $(VENV)/bin/wraplab ]; then $(VENV)/bin/wraplab clean; \
	  elif docker info >/dev/null 2>&1; then docker ps -aq --filter label=wraplab | xargs -r docker rm -f; fi
	rm -rf .tox .pytest_cache .ruff_cache reports
