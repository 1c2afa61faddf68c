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

.PHONY: install run test test-serial test-mpi test-faults bench lint data experiments clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[mpich,test,plot,data]'
	touch $@

run: install
	mkdir -p runs
	$(MPIEXEC) -n $(NP) $(PY) -m mpi4py -m mpicode train --config jobs/configs/demo.toml --out runs/demo.h5 --force
	$(PY) -m mpicode report runs/demo.h5

test: install test-serial test-mpi

test-serial: install
	$(PY) -m pytest -q -p no:cacheprovider tests

# pytest-mpi: the same files under 2, 3 and 5 ranks; only tests marked mpi run there.
test-mpi: install
	for n in 2 3 5; do \
	  $(MPIEXEC) -n $$n $(PY) -m mpi4py -m pytest -q -p no:cacheprovider --with-mpi --only-mpi \
	    --timeout=120 tests/test_mpi.py || exit 1; \
	done

test-faults: install
	$(PY) -m pytest -q -p no:cacheprovider -m faults tests

bench: install
	$(PY) -m mpicode bench kernels
	$(PY) -m mpicode bench schemes
	$(PY) -m mpicode bench comm
	$(PY) -m mpicode bench scale
	$(MPIEXEC) -n 2 $(PY) -m mpi4py -m mpicode bench messaging

# the scikit-learn bundled datasets: data/digits.h5, data/breast_cancer.h5, data/diabetes.h5
data: install
	$(PY) -m mpicode data bundled --out-dir data

# the fixed, seeded experiment suite (< 15 min on 2 cores): results/ and README "Results"
experiments: install
	$(PY) -m mpicode.experiments

lint: install
	$(VENV)/bin/ruff check mpicode tests

clean:
	rm -rf runs .pytest_cache
