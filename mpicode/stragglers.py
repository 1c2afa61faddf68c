"""Straggler (delay) models of DESIGN section 6. Pure: no MPI, no clock.

A delay is drawn per task from a generator keyed by (seed, iteration, worker, task index of
that worker in the iteration), so a run is reproducible and the MPI runtime and the simulator
draw the same delays. Delays are in seconds; the worker splits a task's delay evenly across
its partitions so that a CANCEL cuts it short. ``load`` is the task's size in *shares*: a
share is one worker's fair part, K/N partitions, so an uncoded task has load 1.
"""

from __future__ import annotations

import math

import numpy as np

_M64 = (1 << 64) - 1


def _mix(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _uniform(*key: int) -> float:
    h = 0x5712
    for k in key:
        h = _mix(h ^ (k & _M64))
    return ((h >> 11) + 0.5) / float(1 << 53)  # strictly inside (0, 1)


class StragglerModel:
    name = "none"

    def __init__(self, n_workers: int, n_partitions: int, seed: int, unit: float = 0.01,
                 **params):
        self.N = n_workers
        self.K = n_partitions
        self.seed = seed
        self.unit = unit
        self.p = params

    def uniform(self, iteration: int, worker: int, task_index: int, salt: int = 0) -> float:
        """A uniform in (0, 1) keyed by (seed, iteration, worker, task index): a counter-based
        hash (splitmix64), ~1 us, so 10^6 tasks of a simulation cost no generator set-up."""
        return _uniform(self.seed, iteration, worker, task_index, salt)

    def exponential(self, mean: float, *key) -> float:
        return -mean * math.log(self.uniform(*key))

    def load(self, n_partitions: int) -> float:
        return n_partitions * self.N / self.K

    def delay(self, iteration: int, worker: int, task_index: int, n_partitions: int) -> float:
        """Seconds of injected delay for this task."""
        return 0.0


class ShiftedExp(StragglerModel):
    """T = unit * (a * load + Exp(mean = load / mu)), drawn i.i.d. per task."""

    name = "shifted-exp"

    def delay(self, iteration, worker, task_index, n_partitions):
        load = self.load(n_partitions)
        tail = self.exponential(load / self.p["mu"], iteration, worker, task_index)
        return self.unit * (self.p["shift"] * load + tail)


class ExpPerIteration(StragglerModel):
    """unit * load per task, plus one Exp(delay_mean) per worker and iteration on its first task."""

    name = "exp-per-iteration"

    def delay(self, iteration, worker, task_index, n_partitions):
        d = self.unit * self.load(n_partitions)
        if task_index == 0:
            d += self.unit * self.exponential(self.p["delay_mean"], iteration, worker, 0)
        return d


class Bimodal(StragglerModel):
    """A persistent slow set (slow_fraction of the workers, chosen by the seed), slowed on
    every task by ``slowdown``; everyone else takes unit * load."""

    name = "bimodal"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        n_slow = int(round(self.p["slow_fraction"] * self.N))
        perm = np.random.default_rng([self.seed, 0xB1]).permutation(self.N)
        self.slow = np.zeros(self.N, bool)
        self.slow[perm[:n_slow]] = True

    def delay(self, iteration, worker, task_index, n_partitions):
        f = self.p["slowdown"] if self.slow[worker] else 1.0
        return self.unit * self.load(n_partitions) * f


class Pareto(StragglerModel):
    """unit * load * X with X classic Pareto(x_m = 1, shape), i.i.d. per task."""

    name = "pareto"

    def delay(self, iteration, worker, task_index, n_partitions):
        # classic Pareto(x_m = 1) by inversion
        x = self.uniform(iteration, worker, task_index) ** (-1.0 / self.p["pareto_shape"])
        return self.unit * self.load(n_partitions) * x


class GilbertElliott(StragglerModel):
    """Per-worker good/bad Markov chain stepped once per iteration; bad tasks are slowed by
    ``slowdown``. States are computed forward from iteration 0 and cached."""

    name = "gilbert-elliott"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._states = [np.zeros(self.N, bool)]  # iteration 0: everybody good

    def state(self, iteration: int) -> np.ndarray:
        while len(self._states) <= iteration:
            it = len(self._states)
            prev = self._states[-1]
            u = np.random.default_rng([self.seed, 0x6E, it]).random(self.N)
            bad = np.where(prev, u >= self.p["ge_p_good"], u < self.p["ge_p_bad"])
            self._states.append(bad)
        return self._states[iteration]

    def delay(self, iteration, worker, task_index, n_partitions):
        f = self.p["slowdown"] if self.state(iteration)[worker] else 1.0
        return self.unit * self.load(n_partitions) * f


class Trace(StragglerModel):
    """Replay the delays recorded in a run file's ``/tasks`` (``--stragglers trace:RUN.h5``).

    Recorded per (iteration, worker): the delay of each of its tasks, in dispatch order, and
    their sizes. Task k of worker i in iteration t replays recorded task k's delay *rate*
    (seconds per partition) times its own size, so a trace recorded under one scheme carries
    the same slowness to any other scheme; a task with no recorded counterpart uses the
    worker's rate in that iteration, and a worker with no record that iteration uses its mean
    rate over the trace. Replaying with the recording's scheme reproduces its delays exactly.
    """

    name = "trace"

    def __init__(self, n_workers, n_partitions, seed, path: str, iterations: int, **kw):
        super().__init__(n_workers, n_partitions, seed, **kw)
        import h5py

        from mpicode.config import UsageError
        try:
            with h5py.File(path, "r", locking=False) as f:
                n_rec = int(f.attrs["n_workers"])
                n_done = int(f.attrs["n_done"])
                nt = int(f.attrs.get("n_tasks", f["tasks/iteration"].shape[0]))
                it = f["tasks/iteration"][:nt]
                wk = f["tasks/worker"][:nt]
                npart = f["tasks/n_partitions"][:nt].astype(float)
                dl = f["tasks/delay_s"][:nt]
                k_rec = int(f.attrs.get("n_partitions", n_partitions))
        except (OSError, KeyError) as e:
            raise UsageError(f"trace {path}: not a readable mpicode run ({e})") from None
        if n_rec != n_workers:
            raise UsageError(f"trace {path} was recorded with N={n_rec} workers; this run has "
                             f"N={n_workers}")
        if n_done < iterations:
            raise UsageError(f"trace {path} holds {n_done} iterations; this run needs "
                             f"{iterations}")
        # recorded sizes in shares, so K may differ between recording and replay
        share = npart * n_rec / k_rec
        self.rec: dict[tuple[int, int], list[float]] = {}
        for a, b, sh, d in zip(it.tolist(), wk.tolist(), share.tolist(), dl.tolist(),
                               strict=True):
            self.rec.setdefault((a, b), []).append(d / sh if sh > 0 else 0.0)
        tot = np.zeros(n_workers)
        cnt = np.zeros(n_workers)
        for (_, b), rates in self.rec.items():
            tot[b] += sum(rates)
            cnt[b] += len(rates)
        self.mean_rate = np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)

    def delay(self, iteration, worker, task_index, n_partitions):
        rates = self.rec.get((iteration, worker))
        if not rates:
            rate = self.mean_rate[worker]
        elif task_index < len(rates):
            rate = rates[task_index]
        else:
            rate = float(np.mean(rates))
        return rate * self.load(n_partitions)


MODELS = {m.name: m for m in (StragglerModel, ShiftedExp, ExpPerIteration, Bimodal, Pareto,
                              GilbertElliott)}

PARAMS = ("shift", "mu", "delay_mean", "slow_fraction", "slowdown", "pareto_shape", "ge_p_bad",
          "ge_p_good")


def make_straggler_model(cfg, n_workers: int, n_partitions: int) -> StragglerModel:
    if cfg.stragglers.startswith("trace:"):
        return Trace(n_workers, n_partitions, cfg.seed, path=cfg.stragglers[6:],
                     iterations=cfg.iterations, unit=cfg.delay_unit)
    cls = MODELS[cfg.stragglers]
    return cls(n_workers, n_partitions, cfg.seed, unit=cfg.delay_unit,
               **{k: getattr(cfg, k) for k in PARAMS})
