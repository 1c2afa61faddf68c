"""jobs/report.sbatch outside SLURM (its #SBATCH lines are comments to bash): the per-run
report and the seeds grouped by ``mpicode report --group-by``."""

import os
import subprocess

import pytest
from conftest import PY, ROOT, mpicode

pytestmark = pytest.mark.timeout(300)


def test_report_job_writes_the_grouped_report(tmp_path):
    for scheme in ("uncoded", "two-stage"):
        for seed in (1, 2):
            r = mpicode(["simulate", "--workers", 4, "--scheme", scheme, "--seed", seed,
                         "--iterations", 5, "--samples", 400, "--quiet",
                         "--out", tmp_path / f"{scheme}_{seed}.h5"])
            assert r.returncode == 0, r.stderr
    env = dict(os.environ, MPICODE_PYTHON=PY, MPICODE_HOME=str(ROOT), PYTHONPATH=str(ROOT),
               MPLBACKEND="Agg", GROUP_BY="scheme", SLURM_NTASKS="1")
    r = subprocess.run(["bash", "jobs/report.sbatch", str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    grouped = (tmp_path / "report-grouped.txt").read_text()
    assert "±" in grouped and "two-stage" in grouped and "uncoded" in grouped
    csv = (tmp_path / "report-grouped.csv").read_text().splitlines()
    assert len(csv) == 3 and csv[0].startswith("scheme")  # a header and one row per scheme
    assert (tmp_path / "report.txt").exists() and any((tmp_path / "plots-grouped").iterdir())
