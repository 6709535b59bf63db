# Two commands: `make train` and `make test`. Both create .venv with pip when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rnnseq-installed
ARGS ?=
PYTEST_ARGS ?=
# Test processes: one per core (pytest-xdist); each test file stays in one process, so that its
# module fixtures are built once. TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= auto

.PHONY: train test test-all docs docs-serve gpu-check lint strip-notebooks clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

train: $(STAMP)  ## train the default speech experiment (extra overrides: ARGS="trainer.max_epochs=2")
	$(BIN)/python -m rnnseq.train experiment=asr $(ARGS)

test: $(STAMP)  ## default test suite (no slow learning tests)
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-all: $(STAMP)  ## everything, learning tests included
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# MkDocs announces its successor at every start; the notice says nothing about this build.
DOCS_ENV := NO_MKDOCS_2_WARNING=1

docs: $(STAMP)  ## the documentation site, offline, into site/ (strict: a broken link or reference fails)
	$(DOCS_ENV) $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)  ## the documentation site with live reload on http://127.0.0.1:8000
	$(DOCS_ENV) $(BIN)/mkdocs serve

# On a GPU machine, with the corpora and wheels of `bench/gpu_check.py --prepare DIR` (the command
# it prints); it needs no .venv there. ARGS="--cpu-tiny" runs the tiny CPU mode that `make test` runs.
gpu-check:  ## every experiment, DDP, throughput, beam search, determinism and resume on CUDA (<= 8 min)
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) bench/gpu_check.py $(ARGS)

strip-notebooks: $(STAMP)  ## clear notebook outputs before committing them
	$(BIN)/python notebooks/strip_outputs.py notebooks/*.ipynb

lint: $(STAMP)  ## ruff, and the package's layers (pyproject.toml [tool.importlinter])
	$(BIN)/ruff check rnnseq tests bench docs
	$(BIN)/lint-imports

clean-venv:
	rm -rf $(VENV)
