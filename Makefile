# IoT Suitcase: two commands.
#   make demo   create .venv, install the project, run `suitcase demo` (no hardware, no services)
#   make test   install test dependencies and the services, run ruff, mypy and pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest services bench bench-100k fuzz faults soak dist clean lock

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "IoT Suitcase needs Python 3.11 or newer: install it, or run make PYTHON=python3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: on Debian/Ubuntu run 'apt-get install python3-venv'"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install -q -e ".[demo]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml setup.py requirements-dev.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e ".[all,dev]"
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/suitcase demo $(DEMO_ARGS)

services:
	bash tests/services/install.sh

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

pytest: $(VENV)/.dev-installed
	$(BIN)/pytest $(PYTEST_ARGS)

test: services lint typecheck pytest

bench: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks

# The fuzz of every consumer of untrusted messages, ten times what CI runs (1,000,000 packs into
# kits.wire's decode, 100,000 per other consumer); CI runs the same tests at scale 1 in `make test`.
FUZZ_TESTS := tests/kits/test_wire_fuzz.py tests/server/test_message_fuzz.py tests/edge/test_commands_fuzz.py
fuzz: $(VENV)/.dev-installed
	SUITCASE_FUZZ_SCALE=10 $(BIN)/pytest -q -p no:cacheprovider --timeout=3600 $(FUZZ_TESTS) $(PYTEST_ARGS)

# The fault suite (tests/reliability/: real Mosquitto, influxd, PostgreSQL), then the README's
# guarantees table written from its own results. CI runs the same cases in `make test`.
FAULT_TESTS := tests/reliability
faults: $(VENV)/.dev-installed
	rm -f .suitcase/faults/results.json
	SUITCASE_REQUIRE_SERVICES=1 $(BIN)/pytest -q -p no:cacheprovider --durations=0 $(FAULT_TESTS) $(PYTEST_ARGS)
	$(BIN)/python -m tests.reliability.table

# The same faults, longer: outages, backlogs and hours offline SOAK_SCALE times CI's, 10x the kills.
# Its table is printed (.suitcase/faults/soak.json), the README keeps CI's.
SOAK_SCALE ?= 20
soak: $(VENV)/.dev-installed
	rm -f .suitcase/faults/soak.json
	SUITCASE_SOAK_SCALE=$(SOAK_SCALE) SUITCASE_FAULTS_RESULTS=.suitcase/faults/soak.json SUITCASE_REQUIRE_SERVICES=1 \
	  $(BIN)/pytest -q -p no:cacheprovider --durations=0 --timeout=7200 $(FAULT_TESTS) $(PYTEST_ARGS)
	$(BIN)/python -m tests.reliability.table --results .suitcase/faults/soak.json --print

dist: $(VENV)/.dev-installed
	$(BIN)/pip wheel --no-deps -w dist .

# Refresh the pinned, hashed test environment after changing pyproject.toml's dependencies
# (pip installs a requirements file with hashes in hash-checking mode: a changed file is refused).
lock: | $(BIN)/python
	$(BIN)/pip install -q pip-tools
	CUSTOM_COMPILE_COMMAND="make lock  (pip-compile --generate-hashes, see the Makefile)" \
	  $(BIN)/pip-compile -q --generate-hashes --extra all --extra dev --strip-extras \
	  --no-emit-index-url --no-emit-find-links --unsafe-package iot-suitcase \
	  -o requirements-dev.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .suitcase dist build *.egg-info
