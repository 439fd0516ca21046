# The project's one set-up path: a virtual environment at .venv/ with mmsynth installed into it.
# Every target does its own set-up; re-running it when nothing changed takes seconds.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install browser demo test test-all bench rehearsal faults clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[test]' > $(VENV)/pip.log 2>&1 \
		|| { tail -40 $(VENV)/pip.log; exit 1; }
	$(BIN)/python -c 'import pipeline, annotators, train, shardio'
	touch $@

## browser: Debian's chromium and chromedriver, for the browser test (tests/test_browse_page.py); as root or through
## sudo. Where they cannot be installed this says why and goes on: that test then skips, naming the reason.
APT := env DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Use-Pty=0
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo="sudo -n"; \
	else echo "make browser: not root and no sudo, chromium not installed (the browser test will skip)"; exit 0; fi; \
	command -v apt-get >/dev/null || { echo "make browser: no apt-get, chromium not installed (the browser test will skip)"; exit 0; }; \
	log=$$(mktemp); echo "make browser: apt-get install chromium chromium-driver"; \
	{ $$sudo $(APT) update && $$sudo $(APT) install -y --no-install-recommends chromium chromium-driver; } >$$log 2>&1 \
		|| { tail -20 $$log; echo "make browser: apt-get failed, chromium not installed (the browser test will skip)"; }; \
	rm -f $$log

## demo: the `dvc repro` chain on the built-in sample, offline, for the models in DEMO_MODELS (default: those
## params.yaml's `models` marks `demo: true`, within 10 minutes on 2 cores),
## ending with their comparison page (`pipeline compare`). `dvc repro` alone trains every one of
## `models`; `make demo DEMO_MODELS="a b"` picks others.
DEMO_MODELS ?= $(shell $(BIN)/python -c 'from pipeline.params import load_params; \
	print(*(name for name, model in load_params().models.items() if model.demo))')
demo: install
	dvc repro preview $(addprefix evaluate@,$(DEMO_MODELS))
	pipeline where --dataset sample
	pipeline compare --dataset sample --models "$(DEMO_MODELS)" --no-progress

## test: the default test suite (what CI runs)
test: install browser
	pytest

## test-all: the default suite plus slow tests
test-all: install browser
	pytest -m ''

## bench: every benchmark in benchmarks/ but the rehearsals, one JSON object per line (tests/test_benchmarks.py runs
## each with --quick)
bench: install
	for b in $(filter-out benchmarks/rehearsal.py benchmarks/faults.py,$(wildcard benchmarks/*.py)); do echo "# $$b"; python $$b || exit 1; done

## rehearsal: a first real run rehearsed at REHEARSAL_N raw files through every stage (benchmarks/rehearsal.py; minutes
## at 1,000, an hour at 10,000 on 2 cores), its work folder in REHEARSAL_WORK (default: a temporary one)
REHEARSAL_N ?= 1000
rehearsal: install
	nice -n 10 python benchmarks/rehearsal.py --images $(REHEARSAL_N) $(if $(REHEARSAL_WORK),--work $(REHEARSAL_WORK))

## faults: the fault rehearsal at FAULTS_N raw files (benchmarks/faults.py): ingest, annotate (HED, CLIP), pack, a
## tiny training and its evaluation each SIGKILLed once at a seeded random moment and rerun, then ingest, annotate and
## pack each run on a two-node local Ray cluster whose worker node is killed mid-stage; every output compared by
## sha256 with an uninterrupted run. Work folder: FAULTS_WORK (default:
## a new temporary one; the raw files drawn there are kept for the second run and any later one).
FAULTS_N ?= 1000
faults: install
	work=$${FAULTS_WORK:-$$(mktemp -d)}; \
	nice -n 10 python benchmarks/faults.py --images $(FAULTS_N) --work $$work && \
	nice -n 10 python benchmarks/faults.py --images $(FAULTS_N) --work $$work --ray

clean:
	rm -rf $(VENV) build *.egg-info
