"""Shared fixtures. Every MPI launch here is bounded (MPIEXEC_TIMEOUT + subprocess timeout)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import settings

# Deterministic by default (CI and `make test`): every property test draws the same examples
# each run (derandomized, no example database), so a red run is a real regression, not a
# new draw. `make test-random` (HYPOTHESIS_PROFILE=random) searches afresh, opt-in.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("random", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

from mpicode import launcher  # noqa: E402  (the one launcher helper: MPICH or Open MPI)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
MPIEXEC = launcher.mpiexec_path()
MPI_FAMILY = launcher.family(MPIEXEC)   # "mpich" or "openmpi": the library the tests launch


def mpiexec_cmd(n, ft=False):
    """``[mpiexec, flags the library needs..., "-n", n]`` (Open MPI: --oversubscribe, as root
    --allow-run-as-root; ``ft``: --with-ft ulfm)."""
    return launcher.mpiexec_argv(n, ft=ft, mpiexec=MPIEXEC)


def wait_until(ok, timeout: float, period: float = 0.1) -> bool:
    """Poll ``ok()`` every ``period`` s for at most ``timeout`` s; True once it holds. (A bound
    on a wait, never a timing assertion.)"""
    end = time.monotonic() + timeout
    while True:
        if ok():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(period)


def run_attr(path, key):
    """Root attribute ``key`` of a run file that may still be written (None if unreadable)."""
    import h5py
    try:
        with h5py.File(path, "r", locking=False) as f:
            return f.attrs[key]
    except (OSError, KeyError):
        return None


def mpirun(n, args, timeout=120, cwd=None, env=None, ft=False, **kw):
    """``mpiexec -n n python -m mpi4py -m mpicode ARGS`` with a hard timeout (``ft``: with
    fault tolerance, Open MPI's ULFM)."""
    e = launcher.launch_env()  # one thread per rank
    e.setdefault("MPIEXEC_TIMEOUT", str(int(timeout)))
    e.update(env or {})
    cmd = [*mpiexec_cmd(n, ft), PY, "-m", "mpi4py", "-m", "mpicode", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30,
                          cwd=cwd or ROOT, env=e, **kw)


def mpicode(args, timeout=120, cwd=None, env=None):
    """Serial ``python -m mpicode ARGS`` (``env``: variables added to the environment)."""
    e = {**os.environ, **env} if env else None
    return subprocess.run([PY, "-m", "mpicode", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env=e)


@pytest.fixture
def small_disk(tmp_path):
    """A 1400 KiB tmpfs (root only: skipped elsewhere, required in CI)."""
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1400k", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a small tmpfs in CI: {r.stderr.strip()}")
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


@pytest.fixture
def run_mpi():
    return mpirun


@pytest.fixture
def run_cli():
    return mpicode


# pytest-mpi prints a 20-line "MPI Information" banner on every rank at the end of a run:
# one line from rank 0 instead (the library and the number of ranks), the rest stays as is.
_MPI_LINE = {"on": False}


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "MPIPlugin" and getattr(plugin, "_is_testing_mpi", False):
            plugin._is_testing_mpi = False  # the flag its banner hook reads; nothing else does
            _MPI_LINE["on"] = True


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _MPI_LINE["on"]:
        return
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        vendor, version = MPI.get_vendor()
        terminalreporter.write_line(f"MPI: {vendor} {'.'.join(map(str, version))}, "
                                    f"{comm.size} ranks (per-rank results above)")


@pytest.fixture
def two_runs(tmp_path):
    """Two small run files (two-stage; uncoded with uplink fields) for the report tests."""
    from runfiles import add_comm_fields, synth
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    synth(a, scheme="two-stage")
    synth(b, n=4, scheme="uncoded", scheduler="lyapunov")
    add_comm_fields(b)
    return str(a), str(b)


# -- the unit tests' slow tier ---------------------------------------------------------------
# Property and scaling tests that take seconds each on a quiet core. They run in `make test`
# (`make test-unit-slow`) but not in `make test-fast`, which stays under a minute on a quiet
# machine. Nothing is weakened: the same tests, the same example counts, another make target.
# Listed here by node id (under tests/unit/), so the tier is visible in one place; an id that
# no longer exists fails the collection of its file (the list cannot rot).
SLOW = {
    # statistical scaling over 5 values of V x 12000 slots
    "test_comm.py::test_v_sweep_gap_falls_like_1_over_v_backlog_grows_like_v",
    # hypothesis: 300 / 200 / 300 / 300 random completion orders
    "test_self_scheduling.py::test_self_scheduling_exact_under_any_completion_order",
    "test_schemes.py::test_two_stage_exact_under_any_completion_order",
    "test_two_stage_index.py::test_indexed_decisions_equal_the_scans",
    "test_self_scheduling_index.py::test_indexed_decisions_equal_the_plain_scan",
    # every straggler set of the largest code (C(12, <=5) subsets)
    "test_schemes.py::test_cyclic_exact_for_every_straggler_set[12-5]",
    # the largest seeded simulation of the index equivalence set
    "test_two_stage_index.py::test_seeded_simulations_log_the_same_tasks"
    "[200-replicated:2-exp-per-iteration-None]",
    # every figure of --plots rendered (the e2e report tests render them as well)
    "test_report_views.py::test_gantt_file_name_is_a_to_b",
    "test_report_views.py::test_gantt_legend_and_labels",
    "test_report_views.py::test_no_text_runs_off_any_figure[False]",
    "test_report_views.py::test_no_text_runs_off_any_figure[True]",
    # numba compilations of kernels no other unit test compiles
    "test_batches.py::test_batch_gradient_is_the_exact_gradient_of_the_sampled_rows[mlp]",
    "test_kernels.py::test_vectorized_link_matches_libm_to_float64_precision",
}


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselect anything
def pytest_collection_modifyitems(config, items):
    ids = {item.nodeid.split("tests/unit/", 1)[-1]: item for item in items}
    whole = not any("::" in a for a in config.args)  # whole files: every id is collected
    files = {i.split("::")[0] for i in ids}
    missing = [s for s in SLOW if s.split("::")[0] in files and s not in ids]
    if whole and missing:
        raise pytest.UsageError(f"tests/conftest.py SLOW names tests that do not exist: "
                                f"{missing}")
    for nodeid, item in ids.items():
        if nodeid in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def vcluster():
    """The virtual cluster of tests/cluster (:mod:`mpicode.vcluster`): 5 nodes on one bridge,
    built once per session (leftovers of a killed earlier session removed first) and torn
    down at its end, on SIGTERM/SIGHUP and at exit. Where it cannot be built (not root, no
    ``ip``, no network namespaces) every test that uses it skips with one line saying why;
    with ``CI=true`` it fails instead."""
    from mpicode.vcluster import VirtualCluster, cleanup_stale, unavailable
    why = unavailable()
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the virtual cluster cannot run in CI: {why}")
        pytest.skip(f"no virtual cluster: {why}")
    cleanup_stale()
    with VirtualCluster(5) as vc:
        yield vc
