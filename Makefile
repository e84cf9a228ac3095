# liberation-node: every target creates or updates its own virtual environment in .venv.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The first Python 3.11+ on PATH.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3 python; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; \
	then echo $$p; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= liberation_node.toml
PACKAGES := node protocol routing storage bootstrap

.PHONY: help install run test lint format bench fuzz clean

help:
	@echo "make run    install into .venv and run a node with $(CONFIG)"
	@echo "make test   install into .venv, lint, and run the test suite"
	@echo "make lint   ruff and mypy"
	@echo "make bench  benchmarks (start-up, protocol, ledger, mesh, routing)"
	@echo "make fuzz   a long fuzzing run of every decoder"

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "liberation-node needs Python 3.11 or newer on PATH" >&2; exit 1; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# Byte-compile our packages so that start-up does not compile them each time
# (PYTHONDONTWRITEBYTECODE may be set in the environment).
.PHONY: compile
compile: $(STAMP)
	@$(BIN)/python -m compileall -q $(PACKAGES)

run: compile
	$(BIN)/liberation-node run --config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint compile
	bash tests/ensure-chromium.sh
	bash tests/netns-run.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Figures for the issues' goals, run by hand (not by CI). The long chaos run is separate:
# see docs/reliability.md.
bench: compile
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/protocol.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/routing.py
	bash tests/netns-run.sh $(BIN)/python bench/mesh.py

fuzz: $(STAMP)
	LIBERATION_FUZZ_ITERATIONS=2000000 $(BIN)/python -m pytest tests/fuzz -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
