# Two commands on a fresh machine: `make demo` and `make test`.
# The virtual environment is rebuilt only when pyproject.toml changes.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv demo test test-fast benchmark clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The main job: segmentation on the built-in data, default preset.
demo: $(STAMP)
	$(BIN)/python -m tasks.segmentation.train --preset default

# Two workers, one test file each: the end-to-end runs overlap their
# single-threaded parts (tracing, conversion, scoring) on the 2 cores. One
# TensorFlow intra-op thread per worker: two workers x two threads on two
# cores oversubscribe (measured: 20.4 instead of 24.4 minutes).
test: $(STAMP)
	TF_NUM_INTRAOP_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

# Everything except the end-to-end runs.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

benchmark: $(STAMP)
	$(BIN)/python benchmarks/segmentation.py

clean:
	rm -rf runs .pytest_cache
