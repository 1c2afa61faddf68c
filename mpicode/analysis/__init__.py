"""Analysis: read run logs as tables (``runs``), ``mpicode report`` (``report``), plots.

The table API is re-exported here, so notebooks keep writing::

    import mpicode.analysis as analysis
    run = analysis.read_run("runs/demo.h5")
"""

from mpicode.analysis.runs import *  # noqa: F401,F403
from mpicode.analysis.runs import __all__ as _runs_all

__all__ = list(_runs_all)
