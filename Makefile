# Everything opsbus needs is installed into .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

SEEDS ?=
OPS ?= 300

.PHONY: run test lint bench soak clean promtool browser dist dist-test

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

# promtool (Debian package prometheus) checks /metrics in the tests; installed when apt-get
# can, else the metrics test says how to get it (and fails under CI).
promtool:
	@command -v promtool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		     --no-install-recommends prometheus; } >/dev/null 2>&1; } \
		|| echo "promtool unavailable: install the Debian package prometheus" >&2

# The web console's test drives headless Chromium (Debian package chromium); installed
# when apt-get can, else that test is skipped (and fails under CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		     chromium; } >/dev/null 2>&1; } \
		|| echo "chromium unavailable: install the Debian package chromium" >&2

# The behaviour suites that exercise the store run a second time with every broker on
# PostgreSQL (127.0.0.1:5432, database test, a schema per broker; .ci/run starts it).
PG_SUITES ?= tests/test_todos.py tests/test_pull.py tests/test_delivery_push.py \
	tests/test_stream.py tests/test_actions.py tests/test_silences.py \
	tests/test_routes_api.py tests/test_event_scan.py tests/test_plugins.py

test: $(VENV)/.installed-test promtool browser
	$(BIN)/ruff check broker console plugins tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q $(ARGS)
	$(if $(ARGS),,OPSBUS_TEST_STORE=postgresql $(BIN)/python -m pytest -n 2 --dist loadgroup \
		-q $(PG_SUITES))

lint: $(VENV)/.installed-test
	$(BIN)/ruff check broker console plugins tests bench
	$(BIN)/mypy

# The invariant checker for as long as asked: `make soak SECONDS=600`, or given seeds
# (`make soak SEEDS=17,42`, as a failure prints them); OPS operations per run.
# REPLICAS=3 runs three brokers on one PostgreSQL database instead of one on SQLite.
soak: $(VENV)/.installed-test
	$(BIN)/python -m tests.invariants --seconds "$(or $(SECONDS),0)" --seeds "$(SEEDS)" \
		--ops $(OPS) --replicas "$(or $(REPLICAS),0)"

$(VENV)/.installed-bench: pyproject.toml | $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

# Load comes from wrk (Debian package); the peers benchmark needs the NATS and Redis
# clients. BENCH picks the script: make bench BENCH=peers ARGS="--prefill 1M".
BENCH ?= ingest
bench: $(VENV)/.installed-bench
	command -v wrk >/dev/null || (apt-get install -y wrk || (apt-get update && apt-get install -y wrk))
	$(BIN)/python bench/$(BENCH).py $(ARGS)

# One self-contained executable (PyInstaller one-file) for Linux x86-64: no Python needed
# where it runs. Commands, routes, features and plugins are imported by name at run time,
# so whole packages are collected; the shipped plugins and sample events travel as files
# (plugins are loaded from files and hot-reloaded), and the standard library goes in whole
# so plugins from a user's folder can import any of it.
DIST_STDLIB = $(shell $(PYTHON) -c "import sys; skip = ('_', 'test', 'idlelib', \
	'tkinter', 'turtle', 'lib2to3', 'ensurepip', 'venv', 'distutils', 'pydoc_data', 'msvcrt', \
	'winreg', 'winsound', 'nt', 'nturl2path', 'msilib'); print(' '.join('--hidden-import=' + m \
	for m in sorted(sys.stdlib_module_names) if not m.startswith(skip)))")

# Built from a virtualenv of its own holding only what opsbus needs at run time (the test
# and bench extras would be bundled too); --paths makes the analysis read this tree.
DIST_VENV := build/venv-dist
$(DIST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DIST_VENV)/bin/python -m pip install --quiet '.[dist]'
	touch $@

dist: $(DIST_VENV)/.installed
	@echo "pyinstaller: building dist/opsbus (one file)"
	@$(DIST_VENV)/bin/pyinstaller --noconfirm --clean --onefile --strip --name opsbus \
		--log-level ERROR --paths "$(CURDIR)" \
		--distpath dist --workpath build/pyinstaller --specpath build/pyinstaller \
		--collect-submodules broker --collect-submodules console \
		--collect-submodules plugins --collect-submodules textual \
		--collect-submodules uvloop \
		--collect-data broker --collect-data console --collect-data textual \
		--add-data "$(CURDIR)/plugins:plugins" \
		--add-data "$(CURDIR)/sample_events:sample_events" \
		$(DIST_STDLIB) broker/__main__.py
	@ls -l dist/opsbus

# Builds the executable, then runs it from an empty folder on a fresh data directory.
dist-test: dist $(VENV)/.installed-test
	OPSBUS_BINARY=$(CURDIR)/dist/opsbus $(BIN)/python -m pytest -q -m dist \
		tests/test_binary.py

clean:
	rm -rf $(VENV) .pytest_cache build dist
