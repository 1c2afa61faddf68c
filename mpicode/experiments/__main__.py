"""``python -m mpicode.experiments``: the old name of ``python -m studies`` (make experiments)."""

import runpy

from mpicode.experiments import require_studies

require_studies()
runpy.run_module("studies", run_name="__main__", alter_sys=True)
