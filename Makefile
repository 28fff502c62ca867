# jobsheet: `make demo` and `make test` are all a newcomer needs.
# Each creates .venv when no virtualenv is active and installs what it needs.

SHELL := /bin/bash
PYTHON ?= python3

ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := $(CURDIR)/.venv
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.jobsheet-installed

.PHONY: install demo test lint typecheck pytest stack-up stack-down clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,local]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m jobsheet.ops.demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy jobsheet workflows activities worker.py tests bench

pytest: install
	PATH="$(BIN):$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

stack-up: install
	$(BIN)/jobsheet stack up

stack-down: install
	$(BIN)/jobsheet stack down

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
