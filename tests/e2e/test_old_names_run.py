"""The research suite under its old names, from outside the checkout: ``python -m
mpicode.experiments[.X]`` runs ``studies[.X]``; with mpicode but no checkout (as installed from
the wheel, which ships ``mpicode`` only), one error line and exit 2."""

import json
import os
import shutil
import subprocess

import pytest
from conftest import PY, ROOT

from mpicode import launcher
from mpicode.experiments import NO_SUITE

pytestmark = pytest.mark.timeout(200)


@pytest.mark.parametrize("old, prog", [("mpicode.experiments", "python -m studies"),
                                       ("mpicode.experiments.rivals",
                                        "python -m studies.rivals"),
                                       ("mpicode.experiments.failures",
                                        "python -m studies.failures")])
def test_an_old_name_runs_the_study_from_anywhere(tmp_path, old, prog):
    r = subprocess.run([PY, "-m", old, "--help"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: {prog} "), r.stdout[:200]


def test_without_the_checkout_one_line_and_exit_2(tmp_path):
    shutil.copytree(ROOT / "mpicode", tmp_path / "site" / "mpicode",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "cwd").mkdir()
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}
    where = subprocess.run([PY, "-c", "import mpicode; print(mpicode.__file__)"], env=env,
                           capture_output=True, text=True, timeout=60, cwd=tmp_path / "cwd")
    assert where.stdout.startswith(str(tmp_path / "site")), where.stdout + where.stderr
    for old in ("mpicode.experiments", "mpicode.experiments.rivals"):
        r = subprocess.run([PY, "-m", old, "--quick"], env=env, capture_output=True,
                           text=True, timeout=60, cwd=tmp_path / "cwd")
        assert (r.returncode, r.stderr.strip().splitlines()) == (2, [NO_SUITE]), r.stderr
        assert r.stdout == ""
    # what stayed in the package still runs (make data's traces)
    r = subprocess.run([PY, "-m", "mpicode.experiments.shipped", "--help"], env=env,
                       capture_output=True, text=True, timeout=60, cwd=tmp_path / "cwd")
    assert r.returncode == 0 and "mpicode.io.shipped" in r.stdout, r.stderr


def test_an_old_name_runs_a_study_with_an_mpi_job_from_anywhere(tmp_path):
    """The ranks of a study's MPI job import studies too, started outside the checkout (the
    suite puts the checkout on their PYTHONPATH): the comm study's quick MPI block."""
    out = tmp_path / "comm.json"
    r = subprocess.run([PY, "-m", "mpicode.experiments.comm_study", "--quick", "--json",
                        str(out)], capture_output=True, text=True, timeout=180, cwd=tmp_path,
                       env=launcher.launch_env(timeout=120))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert {c["block"] for c in json.loads(out.read_text())["compare"]} == {"virtual", "mpi"}


def test_a_study_runs_one_thread_per_process(tmp_path):
    """``python -m studies.X`` loads numpy before mpicode (third-party imports first), so
    ``studies`` itself sets one thread per process before any of its modules runs; a user's
    own setting wins."""
    env = {k: v for k, v in os.environ.items() if k not in launcher.THREAD_VARS}
    env["OMP_NUM_THREADS"] = "3"
    code = ("import os, sys, studies; assert 'numpy' not in sys.modules; "
            "print(*(os.environ[v] for v in ('NUMBA_NUM_THREADS', 'OPENBLAS_NUM_THREADS', "
            "'MKL_NUM_THREADS', 'OMP_NUM_THREADS')))")
    r = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                       cwd=ROOT)
    assert (r.returncode, r.stdout.split()) == (0, ["1", "1", "1", "3"]), r.stderr
