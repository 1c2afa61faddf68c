"""Replay of an imported trace (``mpicode traces import``): ``--stragglers trace:TRACE.h5``.

Pure: no MPI, no clock, no file: the matrix is read by :func:`mpicode.io.traces.read_trace`
and handed over by :mod:`mpicode.io.replay` (which registers ``trace``).
Worker i's tasks in iteration t take ``delay_unit * load * relative[t', i']`` seconds, where
``relative`` is the trace's durations divided by their global median (so the median worker
of a median step takes one delay unit per fair share) and ``load`` is the task's size in
shares, as for every other straggler model. ``(t', i')`` follow ``--trace-map``:

* ``refuse`` (default): the run must fit in the trace (N <= trace workers, T <= trace
  iterations); worker i replays trace worker i, iteration t trace iteration t;
* ``cycle``: iterations wrap around (t' = t mod T_trace); workers must still fit;
* ``tile``: both wrap (t' = t mod T_trace, i' = i mod N_trace): extra workers replay copies
  of the trace's workers.

A run with fewer workers or iterations than the trace replays its first N columns and T rows.

    mpiexec -n 9 python -m mpi4py -m mpicode train --stragglers trace:data/trace-AR.h5 \
        --trace-map tile --delay-unit 0.02
"""

from __future__ import annotations

import numpy as np

from mpicode.errors import UsageError
from mpicode.models.stragglers import StragglerModel

TRACE_MAPS = ("refuse", "cycle", "tile")


class ImportedTrace(StragglerModel):
    name = "trace"

    def __init__(self, n_workers, n_partitions, seed, relative: np.ndarray, iterations: int,
                 trace_map: str = "refuse", where: str = "trace", **kw):
        super().__init__(n_workers, n_partitions, seed, **kw)
        T, N = relative.shape
        if trace_map not in TRACE_MAPS:
            raise UsageError(f"--trace-map {trace_map!r}: choose from {', '.join(TRACE_MAPS)}")
        more_w, more_t = n_workers > N, iterations > T
        if trace_map == "refuse" and (more_w or more_t):
            what = " and ".join(x for x, m in ((f"N={n_workers} workers", more_w),
                                               (f"{iterations} iterations", more_t)) if m)
            raise UsageError(f"{where} holds {N} workers x {T} iterations; this run needs "
                             f"{what}: pass --trace-map cycle (iterations wrap) or tile "
                             "(workers and iterations wrap)")
        if trace_map == "cycle" and more_w:
            raise UsageError(f"{where} holds {N} workers; this run has N={n_workers}: "
                             "--trace-map cycle only wraps iterations, use --trace-map tile")
        cols = np.arange(n_workers) % N
        self.rel = np.ascontiguousarray(relative[:, cols])
        self.T = T

    def factor(self, iteration: int, worker: int) -> float:
        """The trace's relative duration for this (iteration, worker) of the run."""
        return float(self.rel[iteration % self.T, worker])

    def rate(self, iteration, worker, task_index=0):
        # seconds per share: what the clairvoyant oracle (worker_profile) needs
        return self.unit * self.factor(iteration, worker)

    def delay(self, iteration, worker, task_index, n_partitions):
        return self.load(n_partitions) * self.rate(iteration, worker) + self.overhead

    def nominal_rate(self, iteration):
        """The iteration's median worker: what-if analysis puts a straggling duration back
        at the typical one (mpicode.engine.ideal)."""
        return self.unit * float(np.median(self.rel[iteration % self.T]))
