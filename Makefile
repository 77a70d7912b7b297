# Two entry points for people (README): `make run` and `make test`. Both need only
# Python 3.11+ and make; they create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per build kind, so that `AMLWATCH_COMPILE=0 make build` and a later plain
# `make build` each reinstall (see setup.py).
UNCOMPILED := $(filter 0,$(AMLWATCH_COMPILE))
STAMP := $(VENV)/.installed$(if $(UNCOMPILED),-uncompiled)

.PHONY: build run test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv

# The modules setup.py compiles with mypyc: an edit to one rebuilds the install (about
# 40 s here), since Python would otherwise import the compiled old version (core/compiled.py
# refuses to, for runs outside make).
COMPILED_SOURCES := $(shell grep -oE '"(core|rules|models)/[a-z_]+[.]py"' setup.py | tr -d '"')

# uv installs the same releases as pip would, in about 30 s here instead of about 85 s
# (a clean checkout's `make bench` must stay under 10 minutes). Compiled at install, as
# pip does: this machine sets PYTHONDONTWRITEBYTECODE, and without .pyc files every
# worker process took 12 s instead of 5 s to import. amlwatch itself is reinstalled
# every time, so that setup.py compiles the changed sources again.
$(STAMP): pyproject.toml setup.py $(COMPILED_SOURCES) | $(BIN)/python
	rm -f $(VENV)/.installed $(VENV)/.installed-uncompiled
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python \
		--reinstall-package amlwatch -e '.[dev]'
	touch $(STAMP)

# `AMLWATCH_COMPILE=0 make build` installs without compiling (see setup.py).
build: $(STAMP)

run: $(STAMP)
	$(BIN)/amlwatch up --simulate

# Two test processes: the integration tests wait on brokers and workers as much as they
# compute, so two take about 8 minutes here instead of 12.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2

# $(call timed_bench,SCRIPT [ARGS]): run bench/SCRIPT if it exists, then say how long it took.
timed_bench = @if [ -f bench/$(firstword $(1)) ]; then \
	start=$$(date +%s); $(BIN)/python bench/$(1) || exit 1; \
	echo "== $(firstword $(1)): $$(($$(date +%s) - start)) s"; \
	else echo "== $(firstword $(1)): not present, skipped"; fi

bench: BENCH_STARTED := $(shell date +%s)
bench: $(STAMP)
	$(call timed_bench,stream_bench.py)
	$(call timed_bench,scale_bench.py)
	$(call timed_bench,memory_bench.py)
	$(call timed_bench,rules_bench.py)
	$(call timed_bench,model_bench.py)
	$(call timed_bench,backtest_bench.py)
	$(call timed_bench,case_store_bench.py)
	$(call timed_bench,cases_bench.py)
	$(BIN)/python bench/summary.py
	@echo "== make bench: $$(($$(date +%s) - $(BENCH_STARTED))) s"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core rules models stream bench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .amlwatch .pytest_cache build core/compiled_sources.json
	find . -name '*.so' -not -path './$(VENV)/*' -delete
