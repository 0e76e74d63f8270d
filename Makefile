# cxloop: `make demo` runs the whole nightly pipeline on demo data; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install install-dev demo test test-all lint unit bench bench-scale clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/cxloop demo

# SQL lint uses dbt's templater, which compiles against a live server: the script
# starts a throwaway embedded one.
lint: install-dev
	$(BIN)/ruff check flows tests benchmarks tools
	$(BIN)/python tools/lint_sql.py

# `make test` leaves out the tests marked slow (the heaviest crash-recovery cases);
# `make test-all`, the scheduled full run (.ci/scheduled), runs every test.
# Tests run in $(TEST_WORKERS) pytest-xdist workers (one per core here), each module kept on
# one worker (--dist loadscope) so its module fixtures (a backfilled warehouse) build once;
# each worker is its own session: one embedded Postgres and one Prefect server per worker.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope

test: install-dev lint
	$(PYTEST) -m "not slow"

test-all: install-dev lint
	$(PYTEST)

unit: install-dev
	$(BIN)/pytest -q -m "not integration and not e2e"

SCALE     ?= 20000
DAYS      ?= 120
GEN_SCALE ?= 1000000
GEN_DAYS  ?= 365
# Pipeline stages, ingest vs bare COPY and churn fit at scale, then the generator at 1M x 365;
# each writes JSON to benchmarks/results/.
bench: install-dev
	$(BIN)/python -m benchmarks.run --customers $(SCALE) --days $(DAYS)
	$(BIN)/python benchmarks/bench_generator.py --customers $(GEN_SCALE) --days $(GEN_DAYS) \
	  > benchmarks/results/generator-$(GEN_SCALE)x$(GEN_DAYS).json

# The adoption workload at full size (benchmarks/scale.py): generate, backfill a year,
# one nightly day on top (and the same night again), bare COPY of the same files,
# capacity and alerts checks; about 30 minutes here. Run before a release, not in CI.
SCALE_CUSTOMERS ?= 1000000
SCALE_DAYS      ?= 365
bench-scale: install-dev
	$(BIN)/python -m benchmarks.scale --customers $(SCALE_CUSTOMERS) --days $(SCALE_DAYS)

clean:
	rm -rf .cxloop dbt_project/target dbt_project/logs
