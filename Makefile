# Two commands on a fresh machine:
#   make repro   set up .venv (pinned deps) and run the whole default pipeline (dvc repro)
#   make test    set up .venv (pinned deps) and run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: repro test lint bench clean-venv

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# torch first, exactly pinned (CPU wheel); then everything else under the lock as constraints
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	@# ruamel.yaml's C parser: no import of ours needs it, but DVC parses dvc.yaml / dvc.lock
	@# several times per stage, in pure Python without it (docs/development.md)
	$(BIN)/python -m pip install -q -c requirements.lock ruamel.yaml.clib
	@touch $(STAMP)

repro: $(STAMP)
	@test -d .git || { echo "error: dvc repro needs a git repository (clone the project)"; exit 2; }
	@# stage commands call `python`: run DVC inside the venv
	@# validate the whole params file for every stage before DVC deletes any stage's outputs
	$(BIN)/betamcmc params check
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo "Done. Next: source $(BIN)/activate; dvc metrics show; betamcmc ui"

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src stages tests bench
	$(BIN)/ruff format --check src stages tests bench

clean-venv:
	rm -rf $(VENV)
