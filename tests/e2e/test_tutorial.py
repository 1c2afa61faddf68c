"""docs/tutorial.ipynb runs: every code cell, in order, in a fresh directory (with nbclient
when it is installed, else the cells' code concatenated and run by this Python)."""

import json
import subprocess

import pytest
from conftest import PY, ROOT

from mpicode import launcher

pytestmark = pytest.mark.timeout(300)
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"


def code_cells(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_tutorial_notebook_is_valid_and_runs(tmp_path):
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4 and code_cells(nb), "a v4 notebook with code cells"
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), \
        "commit the notebook without outputs"
    env = launcher.launch_env(MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    try:
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
        runner = ("import nbformat, nbclient, sys; nb = nbformat.read(sys.argv[1], 4); "
                  "nbclient.NotebookClient(nb, timeout=240).execute(); "
                  "print(''.join(o.get('text', '') for c in nb.cells "
                  "for o in c.get('outputs', [])))")
        cmd = [PY, "-c", runner, str(NOTEBOOK)]
    except ImportError:
        script = tmp_path / "tutorial.py"
        script.write_text("\n\n".join(code_cells(nb)) + "\n")
        cmd = [PY, str(script)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=280, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    runs = tmp_path / "runs" / "tutorial"
    assert len(list(runs.glob("*.h5"))) == 4
    assert (runs / "loss_vs_time.png").stat().st_size > 0
    assert "two-stage" in r.stdout and "±" in r.stdout  # the grouped table, with CIs
