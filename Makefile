# hierclust developer targets. `make help` lists them; `make demo` and `make test` set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install demo test lint format fuzz chaos bench bench-deps clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install hierclust with its dev tools

demo: $(STAMP) ## Run the main job on the embedded default topology
	$(BIN)/hierclust demo

lint: $(STAMP) ## ruff, mypy (strict for core, topology, codec) and the import contracts
	$(BIN)/ruff check hierclust tests bench examples
	$(BIN)/ruff format --check hierclust tests bench examples
	$(BIN)/mypy hierclust
	$(BIN)/lint-imports --no-cache

format: $(STAMP) ## Apply ruff's formatting and import order
	$(BIN)/ruff check --fix --select I hierclust tests bench examples
	$(BIN)/ruff format hierclust tests bench examples

test: lint ## Lint, then the test suite (a few minutes)
	$(BIN)/pytest -m "not fuzz"

fuzz: $(STAMP) ## Long fuzz runs: simulator schedules, the decoder, the topology loader
	$(BIN)/pytest -m fuzz

CHAOS_SEED ?= 1
CHAOS_MINUTES ?= 30
CHAOS_OUT ?= /tmp/hierclust-chaos.json
CHAOS_ARGS ?=

chaos: $(STAMP) ## Nemesis campaign on 100 real agents in lab hosts (30 min; root; docs/reliability.md)
	$(BIN)/hierclust chaos --minutes $(CHAOS_MINUTES) --seed $(CHAOS_SEED) --sites 4 --nodes-per-site 25 --out $(CHAOS_OUT) $(CHAOS_ARGS)

BENCH_OUT ?= /tmp/hierclust-bench
FIGURES ?=

bench: $(STAMP) ## Take every figure of docs/benchmarks.md again (bench/figures.py) (BENCH_OUT, default /tmp/hierclust-bench)
	$(BIN)/python bench/figures.py --out $(BENCH_OUT) $(if $(FIGURES),--only $(FIGURES)) $(BENCH_ARGS)

bench-deps: ## Install what `bench --vs serf`/`--vs corosync` compare with, and Chromium for bench/web_screenshots.py (Debian; as root)
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y serf corosync chromium

clean: ## Remove .venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
