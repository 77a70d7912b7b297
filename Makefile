# Two entry points for people (README): `make run` and `make test`. Both need only
# Python 3.11+ and make; they create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/amlwatch up --simulate

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/stream_bench.py
	$(BIN)/python bench/rules_bench.py
	$(BIN)/python bench/model_bench.py
	$(BIN)/python bench/cases_bench.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core rules models stream bench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .amlwatch .pytest_cache
