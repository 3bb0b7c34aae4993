# Everything installs itself: `make test` on a fresh machine creates .venv and node_modules, then runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test demo demo-check docs bench up down compose-test clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(PY) -m tests.demo

demo-check: install
	$(PY) -m tests.demo --check

# docs/configuration.md is generated from the option table in kong_oidc_py/config.py.
docs: $(VENV)/.installed
	$(PY) -m kong_oidc_py.config_docs

bench: install
	$(PY) bench/run.py

up:
	docker compose up -d --build --wait

down:
	docker compose down -v

compose-test: install
	$(PY) -m pytest tests/compose -rs

clean:
	rm -rf $(VENV) node_modules .pytest_cache
