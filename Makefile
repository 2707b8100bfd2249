# Every target that needs the environment depends on $(STAMP), so a fresh clone sets itself up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The interpreter that .python-version selects (pyenv), else python3.12 on PATH, else python3
# (which must be 3.12 or newer: the targets that create an environment check it).
BASE_PYTHON ?= $(shell pyenv which python 2>/dev/null || command -v python$$(cat .python-version) || command -v python3)
CHECK_PYTHON = $(BASE_PYTHON) -c 'import sys; assert sys.version_info >= (3, 12), f"need Python >= 3.12, got {sys.version.split()[0]} from $(BASE_PYTHON)"'

DATA   := data/polls.csv data/questions.csv
CONFIG := config/fit.toml

.PHONY: help install lock data test lint fit plots notebook validate bench clean

help: ## List the targets
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv (Python from .python-version), install the project with dev extras from requirements.lock, compile the model
	@# Compile the model ahead (as Stan-based tools do at install): fits of this structure then load it.
	@# A failure here (say, an edited table that does not load) only means the first fit compiles.
	$(PY) -m model compile --data data/polls.csv --config $(CONFIG) || echo "make install: the model was not compiled ahead (see above); the first fit will compile it"

# The environment alone: a target that fits compiles what it needs on its first run, so `make test`
# does not wait for the shipped model's compile on one core (its tests compile it beside the others).
$(STAMP): pyproject.toml requirements.lock
	@$(CHECK_PYTHON)
	$(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -c requirements.lock -e '.[dev]'
	@# Byte-compiled on every core (pip compiles one file at a time: ~30 s of a ~50 s install here),
	@# the packages' own test folders left out (a fifth of the files; nothing here imports them),
	@# and this project's package too (its editable install is not compiled by pip, and with
	@# PYTHONDONTWRITEBYTECODE set every process would compile it again: ~0.2 s of each fit).
	@# A file that does not compile only loses its cached bytecode, as with pip's own compile.
	$(PY) -m compileall -q -j 0 -x '/tests/' $(VENV)/lib model || echo "make: some installed files were not byte-compiled (see above); imports of them are slower"
	@touch $(STAMP)

lock: ## Re-resolve dependencies from pyproject.toml and rewrite requirements.lock (then run make test)
	@$(CHECK_PYTHON)
	rm -rf .venv-lock
	$(BASE_PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet -e '.[dev]'
	.venv-lock/bin/pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock
	rm -rf .venv-lock

data: $(STAMP) ## Rebuild data/polls.csv and data/questions.csv from data/readings_sourced.csv
	$(PY) -m model data

test: $(STAMP) ## Run the test suite (structure tests and small sampling tests)
	$(PY) -m pytest

lint: $(STAMP) ## Check formatting and lint with ruff (settings in pyproject.toml; the test suite runs the same check)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

fit: $(STAMP) ## Fit the model to data/polls.csv with config/fit.toml; writes runs/<timestamp>-<hash>/
	$(PY) -m model fit --data data/polls.csv --config $(CONFIG)

plots: $(STAMP) ## Draw runs/latest's figures (runs/latest/figures/) and report.html; fits first if there is no run
	@# A run that failed the gate (exit 3) is still drawn: its report says what failed.
	@if [ ! -e runs/latest ]; then $(PY) -m model fit --data data/polls.csv --config $(CONFIG) || [ $$? -eq 3 ]; fi
	$(PY) -m model plots runs/latest

# The example notebook, executed in examples/ (its first cell moves to the repository root; its
# fits use few draws: under a minute, plus about two minutes the first time, compiling its two
# models) and rendered for reading; the committed notebook has no outputs (tests/test_examples.py checks it).
notebook: $(STAMP) ## Execute examples/quickstart.ipynb and render it to runs/quickstart.html (not committed)
	$(PY) -m nbconvert --execute --to html --output-dir runs --ExecutePreprocessor.timeout=600 examples/quickstart.ipynb
	@echo "open runs/quickstart.html"

# Local Dask workers for `make validate` (WORKERS=2 make validate); the refits share the machine's cores.
WORKERS ?= 1
validate: $(STAMP) ## Backtest against baselines and calibrate (SBC) on Dask; writes runs/validate-<timestamp>/
	$(PY) -m model validate --data data/polls.csv --config $(CONFIG) --workers $(WORKERS) $(VALIDATE_ARGS)

# `make bench BENCH_ARGS="--cases shipped 'sim-r100-*' --repeats 3"`; with no arguments, every case
# (the 10,000-reading daily cases take hours for each implementation).
bench: $(STAMP) ## Time the project's fit against the NumPyro reference (shipped + simulated sizes); writes runs/bench-<timestamp>/
	$(PY) -m model bench --data data/polls.csv --config $(CONFIG) $(BENCH_ARGS)

clean: ## Remove the virtual environment, caches and run folders (keeps runs/.gitkeep)
	rm -rf $(VENV) .venv-lock .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find runs -mindepth 1 ! -name .gitkeep -prune -exec rm -rf {} +
