# hierclust developer targets. `make help` lists them; `make demo` and `make test` set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format fuzz bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install hierclust with its dev tools

demo: $(STAMP) ## Run the main job on the embedded default topology
	$(BIN)/hierclust demo

lint: $(STAMP) ## ruff and mypy (strict for hierclust/core and hierclust/topology)
	$(BIN)/ruff check hierclust tests bench
	$(BIN)/ruff format --check hierclust tests bench
	$(BIN)/mypy hierclust

format: $(STAMP) ## Apply ruff's formatting and import order
	$(BIN)/ruff check --fix --select I hierclust tests bench
	$(BIN)/ruff format hierclust tests bench

test: lint ## Lint, then the test suite (a few minutes)
	$(BIN)/pytest -m "not fuzz"

fuzz: $(STAMP) ## Long fuzz runs (many seeded schedules)
	$(BIN)/pytest -m fuzz

bench: $(STAMP) ## Benchmarks: print JSON reports (see docs/benchmarks.md)
	$(BIN)/python bench/topology_scale.py

clean: ## Remove .venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
