# Quanticity — every target bootstraps its own virtual environment from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-unit test-integration bench lint status clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## make run: the whole system on embedded defaults (private Redis, local Ray, simulated venues)
run: $(STAMP)
	$(BIN)/quanticity run $(ARGS)

## make test: unit, integration, fault and cluster tests
test: $(STAMP)
	$(BIN)/ruff check quanticity actors supervisors research bench tests
	$(BIN)/python -m pytest -m unit -q
	$(BIN)/python -m pytest -m "integration or fault" -q
	$(BIN)/python -m pytest -m cluster -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -m unit -q

bench: $(STAMP)
	$(BIN)/python -m bench

status: $(STAMP)
	$(BIN)/quanticity status

lint: $(STAMP)
	$(BIN)/ruff check quanticity actors supervisors research bench tests

clean:
	rm -rf var/ bench/results/ .pytest_cache
