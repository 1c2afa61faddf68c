"""The README's commands run as written: the quick start (simulate, train under mpiexec,
report) and the report examples verbatim, in a temporary directory, with the venv's
``mpicode``, ``python`` and ``mpiexec`` first on PATH (what ``. .venv/bin/activate`` does);
the train and simulate examples, whose runs are long or need ``make data``, through
``mpicode config show`` with their options verbatim (every flag and value accepted).

    .venv/bin/python -m pytest -q tests/e2e/test_readme.py
"""

import os
import re
import shlex
import subprocess

import h5py
import pytest
from conftest import BIN, PY, ROOT

from mpicode import launcher

pytestmark = pytest.mark.timeout(900)

README = (ROOT / "README.md").read_text()


def blocks(section: str) -> list[str]:
    """The commands of the ``sh`` code blocks under ``## section`` (continuations joined,
    comments dropped)."""
    m = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert m, f"README has no section {section!r}"
    cmds = []
    for code in re.findall(r"```sh\n(.*?)```", m.group(1), re.S):
        for line in code.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                cmds.append(line)
    assert cmds, f"README section {section!r} has no command"
    return cmds


def _env() -> dict:
    e = launcher.launch_env()  # one thread per rank
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("MPIEXEC_TIMEOUT", "300")
    return e


def _run(cmd: str, cwd) -> subprocess.CompletedProcess:
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=_env(), capture_output=True, text=True,
                       timeout=360)
    assert r.returncode == 0, f"{cmd}\nexit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def test_quick_start_and_report_run_verbatim(tmp_path):
    quick = blocks("Quick start")
    assert any(c.startswith("mpicode simulate") for c in quick)
    assert any(c.startswith("mpiexec ") and " train " in c for c in quick)
    assert any(c.startswith("mpicode report") for c in quick)
    outs = []
    for cmd in quick:
        r = _run(cmd, tmp_path)
        outs += [w for w in shlex.split(cmd) if w.endswith(".h5")]
    for out in {o for o in outs if "*" not in o}:
        with h5py.File(tmp_path / out, "r") as f:
            assert f.attrs["status"] == "complete", out
    assert "two-stage" in r.stdout and "complete" in r.stdout  # the last: the report
    for cmd in blocks("Report"):
        _run(cmd, tmp_path)
    assert any((tmp_path / "plots").glob("*.png"))


@pytest.mark.parametrize("section", ["Train", "Simulate"])
def test_train_and_simulate_examples_are_valid(tmp_path, section):
    """Their options verbatim through ``mpicode config show`` (the same option table and
    checks; the runs themselves are the quick start's, smaller)."""
    for cmd in blocks(section):
        words = shlex.split(cmd)
        if "train" not in words and "simulate" not in words:
            continue
        args = words[words.index("train" if "train" in words else "simulate") + 1:]
        r = subprocess.run([PY, "-m", "mpicode", "config", "show", *args], cwd=tmp_path,
                           env=_env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{cmd}\n{r.stderr}"
        for flag, value in zip(args, args[1:], strict=False):
            if flag.startswith("--") and not value.startswith("--"):
                key = flag[2:].replace("-", "_")
                assert re.search(rf"^{key} = .*# cli$", r.stdout, re.M), (flag, r.stdout)
