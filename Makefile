# Everything opsbus needs is installed into .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/opsbus up $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/ruff check broker console plugins tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check broker console plugins tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache
