"""The scheme interface: a pure, event-driven policy for the computing phase.

A driver (the MPI coordinator, or the simulator) runs one iteration as::

    acts = scheme.begin(iteration)                  # stage-1 plan
    dispatch(acts.dispatch)
    while not scheme.done():
        event = next arrival or clock tick
        acts = scheme.on_result(task_id, t, duration)   # or scheme.on_tick(t)
        dispatch(acts.dispatch); cancel(acts.cancel)
        (a driver calls on_tick(t) when t >= scheme.next_deadline())
    dec = scheme.decode()          # {task_id: weight}, gradient = sum weight * message
    cancel(scheme.outstanding())   # stragglers told to drop stale work
    summary = scheme.end(t)        # load, coverage, ...; learns speeds from stage-1 tasks

A scheme class owns its options (``options``: :class:`mpicode.config.Option` entries, which
become CLI flags, TOML keys and ``config show`` lines; ``make_scheme`` passes each class only
its own), its size checks (:meth:`Scheme.validate_size`), and may declare per-iteration log
fields (``log_fields``: name -> HDF5 dtype) whose values ``end()`` returns; they land in
``/iterations/<name>``. ``log_notes`` (free text) land in ``/notes``. Register a class with
:func:`mpicode.register_scheme` (docs/extending.md).

Times ``t`` are seconds since the iteration began, on the driver's clock. ``duration`` is the
worker's own measure of a task (compute + injected delay), which feeds the speed estimates.
Workers are numbered 0..N-1 here (MPI rank = worker + 1). Nothing here imports MPI.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from mpicode.errors import UsageError
from mpicode.options import Option, finite_float, unit_open_closed


@dataclass
class Task:
    """A unit of work: the (weighted) sum of the gradients of ``partitions``."""

    task_id: int
    worker: int
    stage: int
    partitions: np.ndarray                # int64 micro-partition indices
    coeffs: np.ndarray | None = None      # per-partition weights; None = plain sum
    t_dispatch: float = math.nan
    t_done: float = math.nan
    duration: float = math.nan
    state: str = "pending"                # pending | done | cancelled
    used: bool = False
    # a compute budget (seconds of the worker's time on this task, inf: none): no partition
    # starts past it and the message sums those done (DropCompute, docs/design.md §3.4a)
    time_limit: float = math.inf
    n_done: int | None = None             # partitions its message sums (None: all of them)
    n: int = field(init=False, repr=False, compare=False)  # len(partitions), read per event

    def __post_init__(self):
        self.n = len(self.partitions)

    @property
    def computed(self) -> np.ndarray:
        """The partitions the message sums: all, or the first ``n_done`` of a task its time
        limit cut short."""
        return self.partitions if self.n_done is None else self.partitions[:self.n_done]

    @property
    def computed_coeffs(self) -> np.ndarray | None:
        return None if self.coeffs is None or self.n_done is None else \
            self.coeffs[:self.n_done]


@dataclass
class Actions:
    """What a driver must do after an event."""

    dispatch: list[Task] = field(default_factory=list)
    cancel: list[Task] = field(default_factory=list)

    def __iadd__(self, other: Actions) -> Actions:
        self.dispatch += other.dispatch
        self.cancel += other.cancel
        return self


@dataclass
class Decoding:
    weights: dict[int, float]   # task_id -> coefficient of its message
    coverage: float = 1.0       # fraction of the K partitions the gradient covers


SPEED_ALPHA = Option("speed_alpha", finite_float, 0.2,
                     "weight of the newest sample in the speed estimate",
                     check=unit_open_closed, group="two-stage")


class Scheme(ABC):
    """Base class: task bookkeeping, speed estimates, load accounting.

    Subclasses implement :meth:`plan` (stage-1 tasks), :meth:`decodable_with` (is a set of
    messages enough?) and :meth:`decode`; optionally :meth:`react` (new actions after a
    result), :meth:`done` (a faster equivalent of ``decodable_with(arrived ids)``) and
    :meth:`on_tick`/:meth:`next_deadline`.
    """

    name = "base"
    exact = True
    # every scheme learns speeds (end()), so the estimator's weight is everyone's option
    options: tuple[Option, ...] = (SPEED_ALPHA,)
    log_fields: dict[str, str] = {}

    @classmethod
    def validate_size(cls, cfg, n_workers: int, n_partitions: int) -> None:
        """Raise :class:`~mpicode.config.UsageError` if the scheme cannot run with
        ``n_workers`` workers and ``n_partitions`` partitions (``cfg`` gives
        ``stragglers_tolerated`` and the class's options). Default: s < N."""
        s = cfg.stragglers_tolerated
        if s >= n_workers:
            raise UsageError(f"--stragglers-tolerated {s} must be < number of workers "
                             f"{n_workers}")

    @classmethod
    def option_values(cls, cfg) -> dict:
        """This class's options as ``cfg`` gives them (its default where ``cfg`` has none)."""
        return {o.name: getattr(cfg, o.name, o.default) for o in cls.options}

    # ---- explicit state (checkpoints) ---------------------------------------------------
    def state_dict(self) -> dict:
        """What the next iterations depend on, as plain arrays and scalars: the speed
        estimates, the active workers, the last iteration. Per-iteration bookkeeping is
        rebuilt by :meth:`begin`; whatever the constructor derives from (N, K, s, seed,
        options) is rebuilt by constructing the scheme again."""
        return {"tau": self.tau.copy(), "active": self.active.copy(),
                "iteration": int(self.iteration)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (extra keys, e.g. of older checkpoints, are ignored)."""
        if "tau" in state:
            self.tau = np.array(state["tau"], np.float64).reshape(self.N)
        if "active" in state:
            self.active = np.array(state["active"], bool).reshape(self.N)
        if "iteration" in state:
            self.iteration = int(state["iteration"])

    def __init__(self, n_workers: int, n_partitions: int, *, tolerance: int = 0, seed: int = 0,
                 speed_alpha: float = 0.5, **params):
        self.N = int(n_workers)
        self.K = int(n_partitions)
        self.s = int(tolerance)
        self.seed = int(seed)
        self.alpha = float(speed_alpha)
        self.params = params
        # tau[i]: estimated seconds per partition of worker i (NaN until first observed)
        self.tau = np.full(self.N, np.nan)
        self.active = np.ones(self.N, bool)   # workers planning may use (dead ones are not)
        self.iteration = -1
        self.tasks: dict[int, Task] = {}
        self._arrived: set[int] = set()
        self._next_id = 0
        self.log_notes: list[str] = []

    # ---- speed estimates --------------------------------------------------------------
    def speeds(self) -> np.ndarray:
        """Per-worker tau with unobserved workers set to the mean of the observed ones
        (equal for everyone before any observation)."""
        tau = self.tau.copy()
        obs = np.isfinite(tau)
        tau[~obs] = tau[obs].mean() if obs.any() else 1.0
        return tau

    def observe(self, worker: int, per_partition: float, lower_bound: bool = False) -> None:
        old = self.tau[worker]
        if not np.isfinite(old):
            self.tau[worker] = per_partition
        elif lower_bound:
            if per_partition > old:  # a cut-short task only ever raises the estimate
                self.tau[worker] = (1 - self.alpha) * old + self.alpha * per_partition
        else:
            self.tau[worker] = (1 - self.alpha) * old + self.alpha * per_partition

    # ---- task bookkeeping ---------------------------------------------------------------
    def new_task(self, worker: int, stage: int, partitions, coeffs=None, t: float = 0.0) -> Task:
        task = Task(self._next_id, int(worker), stage, np.asarray(partitions, np.int64),
                    None if coeffs is None else np.asarray(coeffs, np.float64), t_dispatch=t)
        self._next_id += 1
        self.tasks[task.task_id] = task
        return task

    def pending(self, stage: int | None = None) -> list[Task]:
        return [t for t in self.tasks.values() if t.state == "pending"
                and (stage is None or t.stage == stage)]

    def arrived(self, stage: int | None = None) -> list[Task]:
        return [t for t in self.tasks.values() if t.state == "done"
                and (stage is None or t.stage == stage)]

    def _cancel(self, tasks, t: float) -> list[Task]:
        out = []
        for task in tasks:
            if task.state == "pending":
                task.state = "cancelled"
                task.t_done = t
                out.append(task)
        return out

    # ---- the driver's interface -----------------------------------------------------------
    def begin(self, iteration: int) -> Actions:
        self.iteration = int(iteration)
        self.tasks = {}
        self._arrived: set[int] = set()
        self._next_id = 0
        self.log_notes = []
        return Actions(dispatch=self.plan())

    def on_result(self, task_id: int, t: float, duration: float = math.nan,
                  n_done: int | None = None) -> Actions:
        """A task's message arrived. Unknown or no-longer-pending tasks are ignored.
        ``n_done``: its time limit cut it short after that many partitions."""
        task = self.tasks.get(task_id)
        if task is None or task.state != "pending":
            return Actions()
        if n_done is not None and n_done < task.n:
            task.n_done = int(n_done)
        task.state = "done"
        self._arrived.add(task_id)
        task.t_done = t
        task.duration = duration if np.isfinite(duration) else t - task.t_dispatch
        return self.react(task, t)

    def on_tick(self, t: float) -> Actions:
        return Actions()

    def next_deadline(self) -> float | None:
        return None

    def outstanding(self, t: float = math.nan) -> list[Task]:
        """Cancel every task still pending (called once the iteration decoded)."""
        return self._cancel(self.pending(), t)

    def end(self, t: float) -> dict:
        """Close the iteration: learn speeds from stage-1 tasks, return its summary."""
        own = type(self).observe is not Scheme.observe  # (a subclass's rule, per task)
        # else :meth:`observe`'s arithmetic on Python floats, without a numpy scalar per task
        tau, a = self.tau.tolist(), self.alpha
        for task in self.tasks.values():
            if task.stage != 1 or task.n == 0:
                continue
            if task.state == "done":
                k = task.n if task.n_done is None else task.n_done  # DropCompute cuts short
                x, low = (task.duration / k if k else task.duration), False
            elif task.state == "cancelled" and math.isfinite(task.t_done):
                x, low = (task.t_done - task.t_dispatch) / task.n, True
            else:
                continue
            if own:
                self.observe(task.worker, x, lower_bound=low)
                continue
            old = tau[task.worker]
            if not math.isfinite(old):
                tau[task.worker] = x
            elif not low or x > old:  # a cut-short task only ever raises the estimate
                tau[task.worker] = (1 - a) * old + a * x
        if not own:
            self.tau[:] = tau
        started = sum(t.n for t in self.tasks.values())
        n_stage2 = sum(t.stage == 2 for t in self.tasks.values())
        return {
            "load": started / self.K,
            "stage2": int(bool(n_stage2)),
            "n_stage2": n_stage2,
        }

    def arrived_ids(self) -> set[int]:
        """Ids of the tasks of this iteration whose message arrived (kept incrementally:
        O(1), so that ``done()`` after every event does not make an iteration O(N^2))."""
        return self._arrived

    # ---- for subclasses ---------------------------------------------------------------------
    @abstractmethod
    def plan(self) -> list[Task]:
        """The stage-1 tasks of a new iteration."""

    def react(self, task: Task, t: float) -> Actions:
        return Actions()

    @abstractmethod
    def decodable_with(self, task_ids: set[int]) -> bool:
        """Would the messages of these tasks (of the current iteration) suffice to decode?

        Exact schemes answer for an exact decode; ``ignore-stragglers`` by its own rule
        (any N - s messages). Ids that are not tasks of this iteration are ignored. A
        communication scheduler calls this to find which offered messages are redundant.
        """

    def done(self) -> bool:
        """Can the driver decode now? Equal to ``decodable_with(arrived ids)`` except where a
        subclass documents a give-up rule (two-stage's ``max_wait``)."""
        return self.decodable_with(self.arrived_ids())

    @abstractmethod
    def decode(self) -> Decoding:
        """Weights of the arrived messages that make the gradient; marks them ``used``."""


def cut_short(n: int, cost: float, delay: float, limit: float) -> tuple[int, float]:
    """(partitions done, seconds) of a task of ``n`` partitions, each taking ``cost`` plus
    its even share of ``delay``, whose worker starts no partition once ``limit`` seconds
    passed since the task began (the first always starts): the worker's rule in
    ``mpicode.mpi.worker.Worker.run_task``."""
    if n <= 0 or not math.isfinite(limit):
        return n, n * cost + delay
    u = cost + delay / n
    if u <= 0:
        return n, n * cost + delay
    done = n
    for j in range(1, n):   # partition j starts at j * u (as the worker adds them up)
        if j * u >= limit:
            done = j
            break
    return done, done * u


def multiple_of_workers(name: str, n_workers: int, n_partitions: int) -> None:
    """The size check of the schemes that cut the data into N equal blocks."""
    if n_partitions % n_workers:
        raise UsageError(f"--partitions {n_partitions} must be a multiple of the number of "
                         f"workers {n_workers} for scheme {name}")


def equal_blocks(N: int, K: int) -> list[np.ndarray]:
    """Classic schemes' view of the data: N equal blocks of K/N micro-partitions."""
    b = K // N
    return [np.arange(i * b, (i + 1) * b, dtype=np.int64) for i in range(N)]
