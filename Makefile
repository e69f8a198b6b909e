# zts developer entry points. `make demo` and `make test` bootstrap everything they need:
# a Python 3.11 venv in .venv (pip) and the Node tools in node_modules (npm ci).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

CHROMIUM := /usr/bin/chromium

.PHONY: setup demo test lint typecheck pytest bench clean browser

setup: $(STAMP_PY) $(STAMP_NODE)

$(STAMP_PY): requirements.txt requirements-dev.txt pyproject.toml setup.py shared/adapters/_flowscan.c
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "zts needs Python 3.11 (azure-functions 1.x); found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/zts demo

lint: $(STAMP_PY)
	$(BIN)/ruff check .

typecheck: $(STAMP_PY)
	$(BIN)/mypy

# The report's browser tests drive Debian's Chromium (no browser download): install it once
# when it is missing and apt can (root); otherwise those tests skip and say why.
browser:
	@test -x $(CHROMIUM) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
	  echo "note: $(CHROMIUM) is missing and cannot be installed here; browser tests will skip"

pytest: setup browser
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: setup
	$(BIN)/python benchmarks/bench_inventory.py
	$(BIN)/python benchmarks/bench_policy.py
	$(BIN)/python benchmarks/bench_azure.py
	$(BIN)/python benchmarks/bench_analytics.py

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .demo
