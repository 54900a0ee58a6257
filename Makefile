# Two entry points: `make dev` (whole stack + demo) and `make test` (the suite CI runs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dev test lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(STAMP)
	$(MAKE) lint
	$(PY) -m pytest

dev: $(STAMP)
	$(PY) -m devstack

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache

# Benchmarks and the capacity model's inputs (docs/benchmarks.md): about 40 minutes on 2 cores.
# `$(PY) -m bench --tiny` runs every phase in seconds; `$(PY) -m bench --help` lists the sizes.
.PHONY: bench
bench: $(STAMP)
	$(PY) -m bench --docs docs/benchmarks.md

# Fault drills (issue #5, tests/drills): SIGKILLed worker, Temporal and PostgreSQL restarts, SMTP errors,
# on real processes. About 2 minutes; prints the figures table and writes it to .data/drills.md (or
# $WARMUP_DRILL_REPORT). `make test` runs them too. A base folder of our own: any other pytest session
# starting on the machine resets /tmp/pytest-of-$USER to 0700, which locks the postgres user out of
# its data folder mid-run.
.PHONY: drill
drill: $(STAMP)
	$(PY) -m pytest tests/drills -p no:cacheprovider --basetemp=$(CURDIR)/.data/drill-tmp
