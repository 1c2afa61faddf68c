# mpicode: `make run` and `make test` do their own set-up (a venv in .venv) on first use.
PYTHON_BOOT ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
MPIEXEC     ?= $(VENV)/bin/mpiexec
NP          ?= 5
# Every MPI launch is bounded: a hung job is killed by the launcher (MPICH hydra).
export MPIEXEC_TIMEOUT ?= 600
export OMP_NUM_THREADS ?= 1
export NUMBA_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: help install run test test-fast test-e2e test-serial test-mpi test-faults bench lint data experiments clean

help:  ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

install: $(VENV)/.installed  ## create .venv and install mpicode with every extra

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[mpich,test,plot,data]'
	touch $@

run: install  ## demo: 4 workers + coordinator, then the report table
	mkdir -p runs
	$(MPIEXEC) -n $(NP) $(PY) -m mpi4py -m mpicode train --config jobs/configs/demo.toml --out runs/demo.h5 --force
	$(PY) -m mpicode report runs/demo.h5

test: install test-fast test-e2e test-mpi  ## everything CI runs (~10 min on 2 quiet cores)

test-fast: install  ## unit tests: serial, no subprocess (< 1 min)
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

test-e2e: install  ## end-to-end runs of the CLI and of mpiexec jobs (subprocesses, timeouts)
	$(PY) -m pytest -q -p no:cacheprovider tests/e2e

test-serial: test-fast test-e2e

# pytest-mpi: the same files under 2, 3 and 5 ranks; only tests marked mpi run there.
test-mpi: install  ## pytest-mpi under mpiexec -n 2, 3 and 5
	for n in 2 3 5; do \
	  $(MPIEXEC) -n $$n $(PY) -m mpi4py -m pytest -q -p no:cacheprovider --with-mpi --only-mpi \
	    --timeout=120 tests/mpi || exit 1; \
	done

test-faults: install  ## the fault-injection tests only
	$(PY) -m pytest -q -p no:cacheprovider -m faults tests

bench: install  ## every benchmark (run on a quiet machine)
	$(PY) -m mpicode bench kernels
	$(PY) -m mpicode bench schemes
	$(PY) -m mpicode bench comm
	$(PY) -m mpicode bench scale
	$(MPIEXEC) -n 2 $(PY) -m mpi4py -m mpicode bench messaging
	$(PY) -m mpicode bench runlog

# the scikit-learn bundled datasets: data/digits.h5, data/breast_cancer.h5, data/diabetes.h5
data: install  ## the bundled scikit-learn datasets into data/
	$(PY) -m mpicode data bundled --out-dir data

# the fixed, seeded experiment suite (< 15 min on 2 cores): results/ and README "Results"
experiments: install  ## the seeded experiment suite: results/ and README Results
	$(PY) -m mpicode.experiments

lint: install  ## ruff
	$(VENV)/bin/ruff check mpicode tests

clean:  ## remove runs/ and caches
	rm -rf runs .pytest_cache
