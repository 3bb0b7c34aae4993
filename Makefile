# Everything installs itself: `make test` on a fresh machine creates .venv and node_modules, then runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# `make run CONFIG=my-kong.yml PORT=8000`: your own declarative config on the local Kong host.
CONFIG ?= kong.yml
PORT ?= 8000
DEMO_ARGS ?=
# `docker compose` (v2 plugin) is what docker-compose.yml is written for (`up --wait`).
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose")

.PHONY: install demo-install test demo demo-check run docs bench fuzz up down compose-test clean

# Everything: runtime, test and benchmark extras (Playwright, Envoy, peer JOSE libraries).
install: $(VENV)/.installed node_modules/.installed

# What the demo and `make run` need: the runtime, the emulator's few packages, the test IdP.
demo-install: $(VENV)/.demo-installed node_modules/.installed

$(VENV)/bin/python:
	@echo "==> creating the virtualenv $(VENV) ($(PYTHON) -m venv)"
	@$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	@echo "==> installing kong-oidc-py with its test and bench extras into $(VENV) (a few minutes on a fresh machine)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	@touch $@ $(VENV)/.demo-installed

$(VENV)/.demo-installed: pyproject.toml | $(VENV)/bin/python
	@echo "==> installing kong-oidc-py and the demo's packages into $(VENV) (each package is listed as it comes)"
	PYTHONUNBUFFERED=1 $(PY) -m pip install --disable-pip-version-check --progress-bar off -e '.[demo]' \
		| grep --line-buffered -E '^(Collecting|Successfully installed)' || true
	@$(PY) -c 'import kong_oidc_py, yaml, msgpack' || { echo "make: installing into $(VENV) failed (see pip's output above)"; exit 1; }
	@touch $@

node_modules/.installed: package.json package-lock.json
	@echo "==> installing the test identity provider (npm ci: oidc-provider)"
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: demo-install
	@echo "==> starting the demo (Ctrl-C stops it)"
	$(PY) -m tests.demo $(DEMO_ARGS)

demo-check: demo-install
	$(PY) -m tests.demo --check $(DEMO_ARGS)

run: demo-install
	$(PY) -m tests.kong_host --config $(CONFIG) --port $(PORT)

# docs/configuration.md is generated from the option table in kong_oidc_py/config.py.
docs: $(VENV)/.installed
	$(PY) -m kong_oidc_py.config_docs

bench: install
	$(PY) bench/run.py

# Coverage-guided fuzzing (fuzz/FUZZING.md); not part of `make test`. Budget per target:
# FUZZ_RUNS executions or FUZZ_SECONDS, whichever ends first; FUZZ_TARGETS to pick targets.
FUZZ_RUNS ?= 100000
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= $(shell $(PY) -c 'import fuzz; print(" ".join(fuzz.TARGETS))' 2>/dev/null)

$(VENV)/.fuzz-installed: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,fuzz]'
	@touch $@

fuzz: install $(VENV)/.fuzz-installed
	@mkdir -p fuzz/.work
	$(PY) -m fuzz.scaling
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $$t (runs $(FUZZ_RUNS), at most $(FUZZ_SECONDS) s)"; \
		$(PY) -m fuzz.run $$t --runs $(FUZZ_RUNS) --seconds $(FUZZ_SECONDS) 2>&1 | tee fuzz/.work/$$t.log \
			| grep -E '^#[0-9]+[[:space:]]+(INITED|DONE|pulse)|^stat::number_of_executed|^==|Violation|Error' || true; \
		test $${PIPESTATUS[0]} -eq 0 || { echo "fuzz $$t: violation, input in fuzz/.work/$$t/"; exit 1; }; \
	done

define NO_COMPOSE
make: the docker compose plugin is missing (docker compose version failed)$(if $(shell command -v docker-compose),; docker-compose v1 is installed but cannot run this file since it has no up --wait,). Install the plugin (Debian/Ubuntu: apt-get install docker-compose-plugin) and retry.
endef

up:
	@test -n "$(COMPOSE)" || { echo "$(NO_COMPOSE)" >&2; exit 2; }
	$(COMPOSE) up -d --build --wait

down:
	@test -n "$(COMPOSE)" || { echo "$(NO_COMPOSE)" >&2; exit 2; }
	$(COMPOSE) down -v

compose-test: install
	$(PY) -m pytest tests/compose -rs

clean:
	rm -rf $(VENV) node_modules .pytest_cache
