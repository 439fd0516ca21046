# The project's one set-up path: a virtual environment at .venv/ with mmsynth installed into it.
# Every target does its own set-up; re-running it when nothing changed takes seconds.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install demo test test-all bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[test]' > $(VENV)/pip.log 2>&1 \
		|| { tail -40 $(VENV)/pip.log; exit 1; }
	$(BIN)/python -c 'import pipeline, annotators, train, shardio'
	touch $@

## demo: the whole `dvc repro` chain on the built-in sample, offline
demo: install
	dvc repro
	pipeline where --dataset sample

## test: the default test suite (what CI runs)
test: install
	pytest

## test-all: the default suite plus slow tests
test-all: install
	pytest -m ''

## bench: every benchmark in benchmarks/, one JSON object per line (tests/test_benchmarks.py runs each with --quick)
bench: install
	for b in benchmarks/*.py; do echo "# $$b"; python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
