"""Straggler (delay) models (docs/design.md §5). Pure: no MPI, no clock.

A delay is drawn from a generator keyed by (seed, iteration, worker, task index of that worker
in the iteration), so a run is reproducible and the MPI runtime and the simulator draw the
same delays. Delays are in seconds; the worker splits a task's delay evenly across its
partitions so that a CANCEL cuts it short. ``load`` is the task's size in *shares*: a share is
one worker's fair part, K/N partitions, so an uncoded task has load 1.

Every delay has three parts: a *rate* (seconds per share) times the task's load, a *one-off*
per worker and iteration (exp-per-iteration's Exp draw, on the worker's first task), and the
per-task overhead ``--task-overhead`` (seconds on every task: splitting work has a price).
``--delay-form`` says where the random rate of shifted-exp and pareto is drawn: ``worker``
(default) once per worker and iteration, so a slow machine is slow for all its tasks of the
iteration; ``task`` afresh for every task (the former behaviour, which lets a scheme that
cuts work into small tasks buy fresh, smaller draws). Task 0 of a worker draws the same value
in both forms, so one-task-per-worker schemes (uncoded, speed-aware, frc, cyclic) see equal
delays under either. :meth:`StragglerModel.worker_profile` gives each worker's realised
(seconds per partition, one-off seconds) of an iteration, for the clairvoyant oracle.
"""

from __future__ import annotations

import math

import numpy as np

_M64 = (1 << 64) - 1
DELAY_FORMS = ("worker", "task")


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
                 task_overhead: float = 0.0, delay_form: str = "worker", **params):
        if delay_form not in DELAY_FORMS:
            raise ValueError(f"delay form must be one of {DELAY_FORMS}, got {delay_form!r}")
        self.N = n_workers
        self.K = n_partitions
        self.seed = seed
        self.unit = unit
        self.overhead = float(task_overhead)
        self.form = delay_form
        self.p = params

    def key(self, task_index: int) -> int:
        """The task index the random rate is keyed by: 0 for every task in the worker form."""
        return 0 if self.form == "worker" else task_index

    def rate(self, iteration: int, worker: int, task_index: int = 0) -> float:
        """Seconds of delay per share of this task (without the one-off and the overhead)."""
        return 0.0

    def one_off(self, iteration: int, worker: int) -> float:
        """Seconds added once per worker and iteration (on its first task)."""
        return 0.0

    def worker_profile(self, iteration: int, partition_cost: float):
        """(c, d): per worker, seconds per partition of a single task holding all its work
        in ``iteration`` (``partition_cost`` + its realised delay rate) and the one-off
        seconds it pays however little it gets (one-off delay + one task's overhead)."""
        share = self.N / self.K
        c = np.array([partition_cost + share * self.rate(iteration, w, 0)
                      for w in range(self.N)])
        d = np.array([self.one_off(iteration, w) + self.overhead for w in range(self.N)])
        return c, d

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
        return self.overhead


class ShiftedExp(StragglerModel):
    """T = unit * (a * load + Exp(mean = load / mu)): the tail drawn once per worker and
    iteration (``worker`` form) or per task (``task`` form)."""

    name = "shifted-exp"

    def delay(self, iteration, worker, task_index, n_partitions):
        load = self.load(n_partitions)
        tail = self.exponential(load / self.p["mu"], iteration, worker, self.key(task_index))
        return self.unit * (self.p["shift"] * load + tail) + self.overhead

    def rate(self, iteration, worker, task_index=0):
        tail = self.exponential(1.0 / self.p["mu"], iteration, worker, self.key(task_index))
        return self.unit * (self.p["shift"] + tail)


class ExpPerIteration(StragglerModel):
    """unit * load per task, plus one Exp(delay_mean) per worker and iteration on its first task."""

    name = "exp-per-iteration"

    def delay(self, iteration, worker, task_index, n_partitions):
        d = self.unit * self.load(n_partitions)
        if task_index == 0:
            d += self.unit * self.exponential(self.p["delay_mean"], iteration, worker, 0)
        return d + self.overhead

    def rate(self, iteration, worker, task_index=0):
        return self.unit

    def one_off(self, iteration, worker):
        return self.unit * self.exponential(self.p["delay_mean"], iteration, worker, 0)


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
        return self.unit * self.load(n_partitions) * f + self.overhead

    def rate(self, iteration, worker, task_index=0):
        return self.unit * (self.p["slowdown"] if self.slow[worker] else 1.0)


class Pareto(StragglerModel):
    """unit * load * X with X classic Pareto(x_m = 1, shape), drawn per worker and iteration
    (``worker`` form) or per task (``task`` form)."""

    name = "pareto"

    def _x(self, iteration, worker, task_index):
        # classic Pareto(x_m = 1) by inversion
        return self.uniform(iteration, worker, self.key(task_index)) ** (
            -1.0 / self.p["pareto_shape"])

    def delay(self, iteration, worker, task_index, n_partitions):
        x = self._x(iteration, worker, task_index)
        return self.unit * self.load(n_partitions) * x + self.overhead

    def rate(self, iteration, worker, task_index=0):
        return self.unit * self._x(iteration, worker, task_index)


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
        return self.unit * self.load(n_partitions) * f + self.overhead

    def rate(self, iteration, worker, task_index=0):
        return self.unit * (self.p["slowdown"] if self.state(iteration)[worker] else 1.0)


class Trace(StragglerModel):
    """Replay the delays recorded in a run file's ``/tasks`` (``--stragglers trace:RUN.h5``).

    Each recorded delay is split back into the recording model's parts: its one-off (a
    worker's exp-per-iteration draw, on its first task of the iteration) and its per-task
    overhead are known from the recorded configuration and seed, the rest is a rate (seconds
    per share). Replay keeps that semantics: the one-off is paid once, on the replaying
    worker's first task, whatever its size; the rate scales with each task's size; this run's
    own ``--task-overhead`` is added per task. So a trace recorded under one scheme carries the
    same slowness to any other, and frc or cyclic (load s+1) no longer pay a one-off delay
    s+1 times. Task k of a worker replays recorded task k's rate (``--delay-form task``) or
    recorded task 0's (``worker``, the default); a task with no recorded counterpart uses the
    worker's mean rate in that iteration, a worker with no record its mean over the trace.
    A recording whose model cannot be rebuilt (e.g. its own trace file is gone) is replayed
    all as rate, and :attr:`note` says so. Replaying with the recording's scheme and options
    reproduces its delays (up to rounding).
    """

    name = "trace"

    def __init__(self, n_workers, n_partitions, seed, path: str, iterations: int, **kw):
        super().__init__(n_workers, n_partitions, seed, **kw)
        from mpicode.config import UsageError
        n_rec, n_done, k_rec, it, wk, npart, dl, cfg = _read_trace(path, n_partitions)
        if n_rec != n_workers:
            raise UsageError(f"trace {path} was recorded with N={n_rec} workers; this run has "
                             f"N={n_workers}")
        if n_done < iterations:
            raise UsageError(f"trace {path} holds {n_done} iterations; this run needs "
                             f"{iterations}")
        rec_model, self.note = _recorded_model(cfg, n_rec, k_rec, path)
        over = rec_model.overhead if rec_model is not None else 0.0
        # recorded sizes in shares, so K may differ between recording and replay
        share = npart * n_rec / k_rec
        self.rec: dict[tuple[int, int], list[float]] = {}
        self.once: dict[tuple[int, int], float] = {}
        for a, b, sh, d in zip(it.tolist(), wk.tolist(), share.tolist(), dl.tolist(),
                               strict=True):
            rates = self.rec.setdefault((a, b), [])
            d = d - over
            if not rates and rec_model is not None:
                self.once[a, b] = once = min(max(d, 0.0), rec_model.one_off(a, b))
                d -= once
            rates.append(max(d, 0.0) / sh if sh > 0 else 0.0)
        tot = np.zeros(n_workers)
        cnt = np.zeros(n_workers)
        for (_, b), rates in self.rec.items():
            tot[b] += sum(rates)
            cnt[b] += len(rates)
        self.mean_rate = np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)

    def rate(self, iteration, worker, task_index=0):
        rates = self.rec.get((iteration, worker))
        k = self.key(task_index)
        if not rates:
            return float(self.mean_rate[worker])
        return rates[k] if k < len(rates) else float(np.mean(rates))

    def one_off(self, iteration, worker):
        return self.once.get((iteration, worker), 0.0)

    def delay(self, iteration, worker, task_index, n_partitions):
        d = self.rate(iteration, worker, task_index) * self.load(n_partitions) + self.overhead
        return d + (self.one_off(iteration, worker) if task_index == 0 else 0.0)


def _recorded_model(cfg_json: str, n_rec: int, k_rec: int, path: str):
    """(the recording's straggler model rebuilt from its stored configuration, or None;
    a note when it could not be)."""
    import json

    from mpicode.config import OPTIONS, Config, UsageError
    try:
        stored = json.loads(cfg_json) if cfg_json else {}
    except ValueError:
        stored = {}
    if not stored.get("stragglers"):
        return None, f"trace {path}: no recorded configuration; every delay replayed as a rate"
    values = {o.name: o.default for o in OPTIONS}
    values.update(stored)
    try:
        return make_straggler_model(Config(values), n_rec, k_rec), ""
    except (UsageError, KeyError, TypeError, ValueError) as e:
        return None, f"trace {path}: recorded model not rebuilt ({e}); replayed as a rate"


TRACE_FIELDS = ("iteration", "worker", "n_partitions", "delay_s")


def _read_trace(path: str, n_partitions: int):
    """The recorded tasks of a run file, checked: (N, n_done, K, iteration, worker,
    n_partitions, delay_s, config JSON or ""). Any problem is a one-line UsageError naming
    the file."""
    import os

    import h5py

    from mpicode.config import UsageError

    where = f"trace {path}"
    if not os.path.isfile(path):
        raise UsageError(f"{where}: file not found" if not os.path.exists(path)
                         else f"{where}: not a file")
    try:
        f = h5py.File(path, "r", locking=False)
    except (OSError, ValueError) as e:
        raise UsageError(f"{where}: not a readable HDF5 file ({' '.join(str(e).split())})"
                         ) from None
    with f:
        try:
            attrs = {k: f.attrs[k] for k in ("n_workers", "n_done") if k in f.attrs}
            cfg = f.attrs.get("config", "")
            cfg = cfg.decode() if isinstance(cfg, bytes) else str(cfg)
            have = [k for k in TRACE_FIELDS if isinstance(f.get(f"tasks/{k}"), h5py.Dataset)]
        except Exception as e:  # a corrupt object header: h5py raises several kinds
            raise UsageError(f"{where}: cannot read ({' '.join(str(e).split())})") from None
        lacking = [k for k in ("n_workers", "n_done") if k not in attrs] + \
            [f"/tasks/{k}" for k in TRACE_FIELDS if k not in have]
        if lacking:
            raise UsageError(f"{where}: not an mpicode run (no {', '.join(lacking)}); record "
                             "one with mpicode train or simulate")
        try:
            n_rec = _attr_int(attrs["n_workers"])
            n_done = _attr_int(attrs["n_done"])
            k_rec = _attr_int(f.attrs.get("n_partitions", n_partitions))
            n_rows = min(f[f"tasks/{k}"].shape[0] if f[f"tasks/{k}"].ndim == 1 else -1
                         for k in TRACE_FIELDS)
            nt = _attr_int(f.attrs.get("n_tasks", n_rows))
            if n_rows < 0:
                raise ValueError("/tasks columns must be 1-D")
            if not 0 <= nt <= n_rows:
                raise ValueError(f"n_tasks {nt} but /tasks holds {n_rows} rows")
            cols = [np.asarray(f[f"tasks/{k}"][:nt]) for k in TRACE_FIELDS]
            # integer columns stay integers; a float or string column is not a run's
            it, wk = (c.astype(np.int64, casting="same_kind") for c in cols[:2])
            npart, dl = (c.astype(float, casting="same_kind") for c in cols[2:])
        except Exception as e:  # wrong kinds, or corrupt chunks (h5py raises several kinds)
            raise UsageError(f"{where}: not a valid mpicode run (bad /tasks or attributes: "
                             f"{' '.join(str(e).split()) or e.__class__.__name__})") from None
    if n_rec < 1 or k_rec < 1 or n_done < 0:
        raise UsageError(f"{where}: not a valid mpicode run (n_workers={n_rec}, "
                         f"n_partitions={k_rec}, n_done={n_done})")
    if np.any((wk < 0) | (wk >= n_rec)) or np.any(it < 0) or np.any(npart < 0):
        raise UsageError(f"{where}: not a valid mpicode run (task rows out of range)")
    if not np.all(np.isfinite(dl) & (dl >= 0)):
        raise UsageError(f"{where}: recorded delays must be finite and >= 0")
    return n_rec, n_done, k_rec, it, wk, npart, dl, cfg


def _attr_int(v) -> int:
    a = np.asarray(v)
    if a.shape != () or not (np.issubdtype(a.dtype, np.integer)
                             or (np.issubdtype(a.dtype, np.floating) and float(a) == int(a))):
        raise ValueError(f"not an integer: {v!r}")
    return int(a)


MODELS = {m.name: m for m in (StragglerModel, ShiftedExp, ExpPerIteration, Bimodal, Pareto,
                              GilbertElliott)}

PARAMS = ("shift", "mu", "delay_mean", "slow_fraction", "slowdown", "pareto_shape", "ge_p_bad",
          "ge_p_good")


def make_straggler_model(cfg, n_workers: int, n_partitions: int) -> StragglerModel:
    common = dict(unit=cfg.delay_unit, task_overhead=getattr(cfg, "task_overhead", 0.0),
                  delay_form=getattr(cfg, "delay_form", "worker"))
    if cfg.stragglers.startswith("trace:"):
        # an imported trace (mpicode traces import; models/trace_replay.py) or a run file
        from mpicode.io.traces import is_trace_file
        if is_trace_file(cfg.stragglers[6:]):
            from mpicode.models.trace_replay import make_imported_trace
            return make_imported_trace(cfg, n_workers, n_partitions)
        return Trace(n_workers, n_partitions, cfg.seed, path=cfg.stragglers[6:],
                     iterations=cfg.iterations, **common)
    cls = MODELS[cfg.stragglers]
    return cls(n_workers, n_partitions, cfg.seed, **common,
               **{k: getattr(cfg, k) for k in PARAMS})
