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

bench: $(STAMP) ## Benchmarks: JSON and plots in /tmp/hierclust-bench (docs/benchmarks.md)
	$(BIN)/python bench/topology_scale.py
	mkdir -p $(BENCH_OUT)
	$(BIN)/python bench/sim_scale.py > $(BENCH_OUT)/sim-scale.json
	$(BIN)/hierclust bench sweep --mode sim --sizes 1000,10000 --fanout 16 --out $(BENCH_OUT)/sweep-sim.json --plot $(BENCH_OUT)/sweep-sim.png
	$(BIN)/hierclust bench --mode udp --nodes 1000 --fanout 16 --kill leaf --out $(BENCH_OUT)/udp1000-leaf.json --plot $(BENCH_OUT)/udp1000-leaf.png
	$(BIN)/hierclust bench --mode udp --nodes 1000 --fanout 16 --kill leader --out $(BENCH_OUT)/udp1000-leader.json --plot $(BENCH_OUT)/udp1000-leader.png
	$(BIN)/hierclust bench --mode udp --nodes 100 --fanout 16 --kill leaf --vs serf --uvloop --out $(BENCH_OUT)/serf100.json --plot $(BENCH_OUT)/serf100.png

bench-deps: ## Install what `hierclust bench --vs serf` compares with (Debian's serf; as root)
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y serf

clean: ## Remove .venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
