# Each target creates or reuses .venv and installs what it needs (re-installs when
# pyproject.toml changes). PYTHON picks the interpreter that creates the venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: demo test test-slow lint typecheck docs bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-base: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed-base

$(VENV)/.installed-docs: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[dev,docs]"
	touch $@ $(VENV)/.installed-dev $(VENV)/.installed-base

## The end-to-end job on the built-in synthetic data.
demo: $(VENV)/.installed-base
	$(VENV)/bin/tfrs-kit demo

## The whole test suite (unit tests and docstring examples), without the slow marker.
## tests/ mirrors src/tfrs_kit; `-m "not slow and not process"` leaves out the tests that
## start Python processes too (a quicker loop while editing).
## TEST_WORKERS pytest-xdist processes share the files (a file's tests stay in one process,
## so its module fixtures are fitted once); TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-dev
	$(PY) -m pytest -m "not slow" -q --durations=10 -n $(TEST_WORKERS) --dist loadfile \
		--no-loadscope-reorder tests src/tfrs_kit --doctest-modules

## Slow end-to-end checks on real data (MovieLens 100K in ../shared/data), and the tests
## that start several processes or fit out of core; on TEST_WORKERS processes too.
test-slow: $(VENV)/.installed-dev
	$(PY) -m pytest -m slow -q --durations=10 -n $(TEST_WORKERS) --dist loadfile \
		--no-loadscope-reorder tests

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/mypy

docs: $(VENV)/.installed-docs
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) docs/_build .pytest_cache .mypy_cache .ruff_cache
