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

Every model is registered by name (``--stragglers NAME``,
:func:`mpicode.registry.register_straggler_model`) and owns its options; a plugin adds one
the same way (docs/extending.md). The replay of a file (``--stragglers trace:FILE``) is
registered by :mod:`mpicode.io.replay`, which reads the file and hands :class:`Trace` (a
recorded run) or :class:`~mpicode.models.trace_replay.ImportedTrace` its arrays: nothing
here reads a file.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from mpicode import registry
from mpicode.errors import UsageError
from mpicode.options import Option, finite_float, nonneg, option_values, positive, unit_closed
from mpicode.registry import register_straggler_model

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


SHIFT = Option("shift", finite_float, 1.0, "shifted-exp: shift a, in delay units per share",
               check=nonneg, group="stragglers")
MU = Option("mu", finite_float, 1.0, "shifted-exp: rate mu; tail mean = load/mu delay units",
            check=positive, group="stragglers")
DELAY_MEAN = Option("delay_mean", finite_float, 2.0, "exp-per-iteration: mean of the one Exp "
                    "delay per worker and iteration, in units", check=nonneg, group="stragglers")
SLOW_FRACTION = Option("slow_fraction", finite_float, 0.25,
                       "bimodal: fraction of persistently slow workers", check=unit_closed,
                       group="stragglers")


def _at_least_one(x):
    return None if x >= 1 else "must be >= 1"


SLOWDOWN = Option("slowdown", finite_float, 5.0, "bimodal/gilbert-elliott: slowdown factor",
                  check=_at_least_one, group="stragglers")  # one option, two models
PARETO_SHAPE = Option("pareto_shape", finite_float, 2.5, "pareto: tail index", check=positive,
                      group="stragglers")
GE_P_BAD = Option("ge_p_bad", finite_float, 0.1, "gilbert-elliott: P(good -> bad) per "
                  "iteration", check=unit_closed, group="stragglers")
GE_P_GOOD = Option("ge_p_good", finite_float, 0.5, "gilbert-elliott: P(bad -> good) per "
                   "iteration", check=unit_closed, group="stragglers")


def common_params(cfg) -> dict:
    """The keyword arguments every model takes from the core options: ``unit``
    (``--delay-unit``), ``task_overhead`` and ``delay_form``."""
    return dict(unit=cfg.delay_unit, task_overhead=getattr(cfg, "task_overhead", 0.0),
                delay_form=getattr(cfg, "delay_form", "worker"))


class StragglerModel:
    """Base class (no delay but the per-task overhead). A subclass gives :meth:`delay`, and
    :meth:`rate`/:meth:`one_off` if the clairvoyant oracle is to see its slowness; it
    declares its ``options`` (handed to the constructor as keyword arguments, kept in
    ``self.p``) and, unless the default does, builds itself in :meth:`from_config`.

    The contract (:func:`mpicode.testing.check_straggler_model`): every draw is a function
    of the seed and its counters (iteration, worker, task index), never of the order of
    calls; delays are finite and >= 0."""

    name = "base"
    nominal = 0.0  # delay units per share of a task that does not straggle
    options: tuple[Option, ...] = ()
    argument: str | None = None  # "RUN.h5": the model is chosen as NAME:ARGUMENT

    @classmethod
    def option_values(cls, cfg) -> dict:
        """This class's options as ``cfg`` gives them (its default where ``cfg`` has none)."""
        return option_values(cls.options, cfg)

    @classmethod
    def from_config(cls, cfg, n_workers: int, n_partitions: int) -> StragglerModel:
        """The model of a configuration: the core parameters (:func:`common_params`,
        ``seed``) and the class's own options."""
        return cls(n_workers, n_partitions, cfg.seed, **common_params(cfg),
                   **cls.option_values(cfg))

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

    def nominal_rate(self, iteration: int) -> float:
        """Seconds of delay per share without straggling (``ideal_s``, docs/design.md §5.1)."""
        return self.unit * self.nominal


@register_straggler_model
class NoStragglers(StragglerModel):
    """No injected delay (but ``--task-overhead``)."""

    name = "none"


@register_straggler_model
class ShiftedExp(StragglerModel):
    """T = unit * (a * load + Exp(mean = load / mu)): the tail drawn once per worker and
    iteration (``worker`` form) or per task (``task`` form)."""

    name = "shifted-exp"
    options = (SHIFT, MU)

    def delay(self, iteration, worker, task_index, n_partitions):
        load = self.load(n_partitions)
        tail = self.exponential(load / self.p["mu"], iteration, worker, self.key(task_index))
        return self.unit * (self.p["shift"] * load + tail) + self.overhead

    def rate(self, iteration, worker, task_index=0):
        tail = self.exponential(1.0 / self.p["mu"], iteration, worker, self.key(task_index))
        return self.unit * (self.p["shift"] + tail)

    def nominal_rate(self, iteration):  # without the exponential tail
        return self.unit * self.p["shift"]


@register_straggler_model
class ExpPerIteration(StragglerModel):
    """unit * load per task, plus one Exp(delay_mean) per worker and iteration on its first task."""

    name = "exp-per-iteration"
    nominal = 1.0  # one delay unit per share: no straggling
    options = (DELAY_MEAN,)

    def delay(self, iteration, worker, task_index, n_partitions):
        d = self.unit * self.load(n_partitions)
        if task_index == 0:
            d += self.unit * self.exponential(self.p["delay_mean"], iteration, worker, 0)
        return d + self.overhead

    def rate(self, iteration, worker, task_index=0):
        return self.unit

    def one_off(self, iteration, worker):
        return self.unit * self.exponential(self.p["delay_mean"], iteration, worker, 0)


@register_straggler_model
class Bimodal(StragglerModel):
    """A persistent slow set (slow_fraction of the workers, chosen by the seed), slowed on
    every task by ``slowdown``; everyone else takes unit * load."""

    name = "bimodal"
    nominal = 1.0  # one delay unit per share: no straggling
    options = (SLOW_FRACTION, SLOWDOWN)

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


@register_straggler_model
class Pareto(StragglerModel):
    """unit * load * X with X classic Pareto(x_m = 1, shape), drawn per worker and iteration
    (``worker`` form) or per task (``task`` form)."""

    name = "pareto"
    nominal = 1.0  # one delay unit per share: no straggling
    options = (PARETO_SHAPE,)

    def _x(self, iteration, worker, task_index):
        # classic Pareto(x_m = 1) by inversion
        return self.uniform(iteration, worker, self.key(task_index)) ** (
            -1.0 / self.p["pareto_shape"])

    def delay(self, iteration, worker, task_index, n_partitions):
        x = self._x(iteration, worker, task_index)
        return self.unit * self.load(n_partitions) * x + self.overhead

    def rate(self, iteration, worker, task_index=0):
        return self.unit * self._x(iteration, worker, task_index)


@register_straggler_model
class GilbertElliott(StragglerModel):
    """Per-worker good/bad Markov chain stepped once per iteration; bad tasks are slowed by
    ``slowdown``. States are computed forward from iteration 0 and cached."""

    name = "gilbert-elliott"
    nominal = 1.0  # one delay unit per share: no straggling
    options = (SLOWDOWN, GE_P_BAD, GE_P_GOOD)

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


class RecordedTasks(NamedTuple):
    """The task rows of a recorded run (read by :func:`mpicode.io.replay.read_run_tasks`)."""

    n_workers: int
    n_done: int
    n_partitions: int
    iteration: np.ndarray     # int64
    worker: np.ndarray        # int64
    partitions: np.ndarray    # float: each task's size in partitions
    delay_s: np.ndarray       # float
    config: str               # the recording's configuration (JSON), or ""


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

    Pure: ``tasks`` are the recorded rows and ``recorded`` the recording's own model (or
    None); :mod:`mpicode.io.replay` reads both from the file.
    """

    name = "trace"

    def __init__(self, n_workers, n_partitions, seed, tasks: RecordedTasks, iterations: int,
                 recorded: StragglerModel | None = None, note: str = "",
                 where: str = "trace", **kw):
        super().__init__(n_workers, n_partitions, seed, **kw)
        n_rec, k_rec = tasks.n_workers, tasks.n_partitions
        if n_rec != n_workers:
            raise UsageError(f"{where} was recorded with N={n_rec} workers; this run has "
                             f"N={n_workers}")
        if tasks.n_done < iterations:
            raise UsageError(f"{where} holds {tasks.n_done} iterations; this run needs "
                             f"{iterations}")
        self.note = note
        over = recorded.overhead if recorded is not None else 0.0
        # recorded sizes in shares, so K may differ between recording and replay
        share = tasks.partitions * n_rec / k_rec
        self.rec: dict[tuple[int, int], list[float]] = {}
        self.once: dict[tuple[int, int], float] = {}
        for a, b, sh, d in zip(tasks.iteration.tolist(), tasks.worker.tolist(), share.tolist(),
                               tasks.delay_s.tolist(), strict=True):
            rates = self.rec.setdefault((a, b), [])
            d = d - over
            if not rates and recorded is not None:
                self.once[a, b] = once = min(max(d, 0.0), recorded.one_off(a, b))
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

    def nominal_rate(self, iteration):  # the iteration's median worker
        cache = self.__dict__.setdefault("_nominal", {})
        if iteration not in cache:
            cache[iteration] = float(np.median([self.rate(iteration, w) for w in range(self.N)]))
        return cache[iteration]

    def delay(self, iteration, worker, task_index, n_partitions):
        d = self.rate(iteration, worker, task_index) * self.load(n_partitions) + self.overhead
        return d + (self.one_off(iteration, worker) if task_index == 0 else 0.0)


def __getattr__(name):  # old names: the models by name; the names of their options
    if name == "MODELS":
        return {n: c for n, c in registry.registered("straggler_model").items()
                if issubclass(c, StragglerModel)}
    if name == "PARAMS":
        return tuple(o.name for o in registry.plugin_options("straggler_model"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_straggler_model(cfg, n_workers: int, n_partitions: int) -> StragglerModel:
    """The straggler model ``cfg.stragglers`` names (``NAME`` or ``NAME:ARG``), built by its
    registered class from ``cfg`` (an error naming the choices if none is registered)."""
    return registry.straggler_model(cfg.stragglers).from_config(cfg, n_workers, n_partitions)
