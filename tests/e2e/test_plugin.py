"""A scheme and a straggler model from packages outside the repository, found through their
entry points (``mpicode.schemes``, ``mpicode.straggler_models``): listed, configured,
simulated and trained under MPI with no change to this repository. The packages are the
worked examples of docs/extending.md, taken from there."""

import os
import re
import subprocess

import h5py
import numpy as np
import pytest
from conftest import PY, ROOT, mpicode, mpirun

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

COMMON = ["--samples", 600, "--features", 8, "--seed", 4, "--iterations", 5, "--quiet"]


def _example(marker: str) -> str:
    """The code block that follows ``<!-- example: MARKER -->`` in docs/extending.md."""
    text = (ROOT / "docs" / "extending.md").read_text()
    m = re.search(rf"<!-- example: {re.escape(marker)} -->\n```python\n(.*?)```", text, re.S)
    assert m, f"docs/extending.md has no example {marker}"
    return m.group(1)


def _dist(site, name, entry_points):
    d = site / f"{name}-0.1.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (d / "entry_points.txt").write_text(entry_points)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site directory (outside the repository) holding the package mpicode_toyscheme and
    its .dist-info with the entry point, as ``pip install --target`` would leave it."""
    site = tmp_path_factory.mktemp("site")
    assert ROOT not in site.parents
    pkg = site / "mpicode_toyscheme"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(_example("mpicode_toyscheme/__init__.py"))
    _dist(site, "mpicode_toyscheme", "[mpicode.schemes]\ntoy = mpicode_toyscheme:Replicated\n")
    return site


def _env(site):
    return {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}


def test_the_plugin_is_listed_and_passes_the_conformance_check(site, tmp_path):
    r = mpicode(["schemes"], env=_env(site))
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.strip().startswith("toy "))
    assert "exact" in line and "mpicode_toyscheme.Replicated" in line
    assert "--toy-copies" in r.stdout and "logs /iterations: redundant" in r.stdout
    # the example's own test, from the docs, with the shipped check_scheme
    (tmp_path / "test_toy.py").write_text(_example("test_toy.py"))
    t = subprocess.run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, **_env(site)})
    assert t.returncode == 0, t.stdout + t.stderr
    assert "2 passed" in t.stdout


def test_simulate_runs_the_plugin_with_its_option(site, tmp_path):
    out = tmp_path / "sim.h5"
    r = mpicode(["simulate", "--workers", 6, "--scheme", "toy", "--toy-copies", 3,
                 "--stragglers", "shifted-exp", "--out", out, *COMMON], env=_env(site))
    assert r.returncode == 0, r.stderr
    ref = tmp_path / "ref.h5"
    r = mpicode(["simulate", "--workers", 6, "--scheme", "uncoded", "--stragglers",
                 "shifted-exp", "--out", ref, *COMMON], env=_env(site))
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f, h5py.File(ref, "r") as g:
        assert f.attrs["scheme"] == "toy" and f.attrs["status"] == "complete"
        assert '"toy_copies": 3' in f.attrs["config"]
        assert (f["iterations/redundant"][:] > 0).all()   # the plugin's own log field
        assert (f["iterations/load"][:] > 1).all()        # r copies started, some cancelled
        # exact: the same gradient steps as uncoded
        np.testing.assert_allclose(f["iterations/loss"][:], g["iterations/loss"][:],
                                   rtol=1e-9)
    bad = mpicode(["simulate", "--workers", 2, "--scheme", "toy", "--toy-copies", 3,
                   "--out", tmp_path / "bad.h5", *COMMON], env=_env(site))
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("mpicode: error: --toy-copies 3 must be <= number of "
                                  "workers 2")
    assert not (tmp_path / "bad.h5").exists()


@pytest.mark.parametrize("mode", ["sleep", "virtual"])
def test_train_runs_the_plugin_under_mpi(site, tmp_path, mode):
    out = tmp_path / f"train-{mode}.h5"
    r = mpirun(5, ["train", "--scheme", "toy", "--toy-copies", 2, "--stragglers", "bimodal",
                   "--delay-unit", 0.005, "--delay-mode", mode, "--out", out, *COMMON],
               env=_env(site))
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["mode"] == "mpi" and f.attrs["status"] == "complete"
        assert f.attrs["scheme"] == "toy" and f.attrs["n_done"] == 5
        assert len(f["iterations/redundant"]) == 5
        assert (f["iterations/redundant"][:] >= 0).all()
        assert np.all(np.isfinite(f["iterations/train_loss"][:]))  # the workers' losses
        assert (f["iterations/coverage"][:] == 1).all()


def test_a_broken_plugin_costs_one_warning_line(site, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    _dist(broken, "mpicode_broken", "[mpicode.schemes]\nbroken = mpicode_nowhere:Gone\n")
    env = {"PYTHONPATH": os.pathsep.join([str(broken), str(site), str(ROOT)])}
    r = mpicode(["schemes"], env=env)
    assert r.returncode == 0
    warn = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(warn) == 1 and warn[0].startswith("mpicode: warning: plugin 'broken'")
    assert "toy " in r.stdout  # the good plugin still loads


@pytest.fixture(scope="module")
def weibull_site(tmp_path_factory):
    """The straggler-model example of docs/extending.md, installed with its entry point."""
    site = tmp_path_factory.mktemp("weibull-site")
    pkg = site / "mpicode_weibull"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(_example("mpicode_weibull/__init__.py"))
    _dist(site, "mpicode_weibull",
          "[mpicode.straggler_models]\nweibull = mpicode_weibull:Weibull\n")
    return site


def test_a_straggler_model_plugin_is_listed_checked_and_simulated(weibull_site, tmp_path):
    env = _env(weibull_site)
    r = mpicode(["plugins"], env=env)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.strip().startswith("weibull "))
    assert "mpicode_weibull.Weibull" in line and "mpicode_weibull 0.1" in line
    assert "--weibull-shape" in r.stdout
    (tmp_path / "test_weibull.py").write_text(_example("test_weibull.py"))
    t = subprocess.run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, **env})
    assert t.returncode == 0, t.stdout + t.stderr
    assert "2 passed" in t.stdout
    out = {}
    for shape in (0.5, 4.0):
        out[shape] = tmp_path / f"w{shape}.h5"
        r = mpicode(["simulate", "--workers", 6, "--scheme", "uncoded", "--stragglers",
                     "weibull", "--weibull-shape", shape, "--out", out[shape], *COMMON],
                    env=env)
        assert r.returncode == 0, r.stderr
    with h5py.File(out[0.5], "r") as f, h5py.File(out[4.0], "r") as g:
        assert f.attrs["stragglers"] == "weibull" and '"weibull_shape": 0.5' in f.attrs["config"]
        assert f["tasks/delay_s"][:].max() > g["tasks/delay_s"][:].max()  # the heavier tail
    bad = mpicode(["simulate", "--stragglers", "weibull", "--weibull-shape", "-1",
                   "--out", tmp_path / "bad.h5", *COMMON], env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "mpicode: error: --weibull-shape: -1.0 must be > 0"



# ---- a misbehaving plugin: one line, the run file failed, exit 1 on every rank --------------
MISBEHAVING = '''
"""Plugins that break the contract, each in one way."""
import math

from mpicode.models.stragglers import StragglerModel
from mpicode.schemes.base import Decoding
from mpicode.schemes.uncoded import Uncoded


class Raises(Uncoded):
    """Its result handler raises in iteration 2."""
    name = "raises"

    def on_result(self, task_id, t, duration=math.nan):
        if self.iteration == 2:
            raise KeyError("no such bucket")
        return super().on_result(task_id, t, duration)


class Ghost(Uncoded):
    """Its decode weights a task that does not exist."""
    name = "ghost"

    def decode(self):
        dec = super().decode()
        dec.weights[999] = 1.0
        return dec


class Shapeless(Uncoded):
    """Its decode returns a list, not a Decoding."""
    name = "shapeless"

    def decode(self):
        return list(super().decode().weights)


class BrokenSlow(StragglerModel):
    """Its delay raises."""
    name = "broken-slow"

    def delay(self, iteration, worker, task_index, n_partitions):
        return 1.0 / (iteration - iteration)
'''


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("bad-site")
    (site / "mpicode_misbehave.py").write_text(MISBEHAVING)
    _dist(site, "mpicode_misbehave",
          "[mpicode.schemes]\nraises = mpicode_misbehave:Raises\n"
          "ghost = mpicode_misbehave:Ghost\nshapeless = mpicode_misbehave:Shapeless\n"
          "[mpicode.straggler_models]\nbroken-slow = mpicode_misbehave:BrokenSlow\n")
    return site


ORIGIN = "(entry point mpicode.{group} '{name} = mpicode_misbehave:{cls}' of " \
         "mpicode_misbehave 0.1)"
BAD = {  # option -> (the line's plugin part, its callback and error, rows kept)
    ("--scheme", "raises"): ("plugin scheme 'raises' " + ORIGIN.format(
        group="schemes", name="raises", cls="Raises"),
        "failed in Raises.on_result: KeyError: 'no such bucket'", 2),
    ("--scheme", "ghost"): ("plugin scheme 'ghost' " + ORIGIN.format(
        group="schemes", name="ghost", cls="Ghost"),
        "failed in Ghost.decode: ValueError: weighted task 999, which does not exist", 0),
    ("--scheme", "shapeless"): ("plugin scheme 'shapeless' " + ORIGIN.format(
        group="schemes", name="shapeless", cls="Shapeless"),
        "failed in Shapeless.decode: ValueError: returned list, not a Decoding with a dict "
        "of weights", 0),
    ("--stragglers", "broken-slow"): ("plugin straggler model 'broken-slow' " + ORIGIN.format(
        group="straggler_models", name="broken-slow", cls="BrokenSlow"),
        "failed in BrokenSlow.delay: ZeroDivisionError: float division by zero", 0),
}


def _one_failed_line(r, out, plugin, what, kept):
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1, r.stderr
    assert lines == [f"mpicode: error: {plugin} {what}; {out}: {kept} iterations readable "
                     f"and a checkpoint at iteration {kept} (--resume continues from there)"]
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "failed" and f.attrs["n_done"] == kept
        assert "checkpoint" in f  # resumable from the last complete iteration


@pytest.mark.parametrize("opt", list(BAD), ids=[v for _, v in BAD])
def test_a_misbehaving_plugin_fails_the_simulation_in_one_line(bad_site, tmp_path, opt):
    out = tmp_path / "bad.h5"
    r = mpicode(["simulate", "--workers", 4, *opt, "--out", out, *COMMON], env=_env(bad_site))
    _one_failed_line(r, out, *BAD[opt])
    if opt[1] == "raises":  # --verbose: the plugin's traceback too, after the one line
        r = mpicode(["simulate", "--workers", 4, *opt, "--out", out, "--force", "--verbose",
                     *COMMON], env=_env(bad_site))
        assert r.returncode == 1
        assert "Traceback (most recent call last)" in r.stderr
        assert 'mpicode_misbehave.py", line' in r.stderr and "KeyError" in r.stderr


@pytest.mark.parametrize("opt", [("--scheme", "raises"), ("--scheme", "ghost")],
                         ids=["raises", "ghost"])
def test_a_misbehaving_plugin_fails_training_on_every_rank(bad_site, tmp_path, opt):
    out = tmp_path / "bad.h5"
    r = mpirun(5, ["train", *opt, "--out", out, *COMMON], env=_env(bad_site))
    # one line from rank 0; the workers stopped (STOP with exit code 1) and exit 1 too: no
    # abort, no traceback
    _one_failed_line(r, out, *BAD[opt])
