# The README's commands. Each installs what it needs first (idempotently).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)
PROFILE ?= quick

.PHONY: install test test-slow test-all bench lint typecheck clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## Python packages in .venv, and a Chromium for Playwright
	bash scripts/install_chromium.sh $(BIN)/python

test: install  ## the default test run (CI): everything not marked slow
	$(BIN)/python -m pytest -q

test-slow: install  ## the long tests only
	$(BIN)/python -m pytest -q -m slow

test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: install  ## the main job: the quick benchmark, table printed at the end
	$(BIN)/earlyexp bench --profile $(PROFILE)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy envs agents harness

clean:
	rm -rf $(VENV) build *.egg-info
