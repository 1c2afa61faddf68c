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

**Membership** (``--on-failure continue``, docs/design.md §2.7): a worker that dies is a
permanent straggler. During an iteration the driver calls ``on_failure(worker, t)``, which
returns the actions that keep the iteration exact: the dead worker's pending tasks are lost,
and the ones the scheme can no longer decode without are re-issued to the survivors (split
into pieces with the same per-partition coefficients, whose messages add up to the lost
one's); between iterations ``set_members(alive)`` re-plans for the survivors. A task stands
for a *slot* of the plan (``Task.slot``, its own id unless it is a piece of a lost task);
an elastic scheme counts, decodes and answers ``decodable_with`` in slots
(``self.slots``, :class:`mpicode.schemes.slots.Slots`) so that a re-issued slot counts as
the original.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from mpicode.errors import UsageError
from mpicode.options import Option, finite_float, unit_open_closed
from mpicode.schemes.slots import Slots, split


class CannotDecode(RuntimeError):
    """A :attr:`Scheme.tolerant` scheme lost more workers than its decode can go around
    (``--on-failure continue``): the run stops with this one line, status ``failed``."""


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
    slot: int = -1                        # the plan position it fills (-1: its own id)
    lost: bool = False                    # cancelled because its worker failed

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
    # survives a worker's death mid-run (--on-failure continue): its plan, done() and decode
    # reason about slots, so the base class's on_failure/reissue keep it exact. A scheme
    # that does not say so is refused with --on-failure continue (check_scheme tests it)
    elastic = False
    # survives a worker's death as a permanent straggler, without re-issuing its work, for
    # as long as its decode can go around the dead (its straggler tolerance): their tasks
    # are lost (at once, in every later iteration's plan too); beyond that the run stops
    # with one line (:class:`CannotDecode`). The rivals partial-gc, hetero-gc, dropcompute
    tolerant = False
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
                "members": self.members.copy(), "iteration": int(self.iteration)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (extra keys, e.g. of older checkpoints, are ignored)."""
        if "tau" in state:
            self.tau = np.array(state["tau"], np.float64).reshape(self.N)
        if "active" in state:
            self.active = np.array(state["active"], bool).reshape(self.N)
        if "members" in state:
            self.set_members(np.array(state["members"], bool).reshape(self.N))
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
        self.members = np.ones(self.N, bool)  # workers alive (set_members, on_failure)
        self._n_dead = 0                      # N - members.sum(), read per begin()
        self.n_lost = 0                      # this iteration's lost tasks (done() of some)
        self._planned_for = self.members.copy()  # the members the structure was built for
        self.iteration = -1
        self.tasks: dict[int, Task] = {}
        self._arrived: set[int] = set()
        self._next_id = 0
        self.log_notes: list[str] = []
        self.slots = Slots(self.tasks)       # this iteration's plan positions

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
                    None if coeffs is None else np.asarray(coeffs, np.float64), t_dispatch=t,
                    slot=self._next_id)
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
        self.slots = Slots(self.tasks)
        self.n_lost = 0
        tasks = self.plan()
        if self._n_dead:  # (a run without failures never gets here: decisions unchanged)
            tasks = self._drop_dead(tasks)
        return Actions(dispatch=tasks)

    def _drop_dead(self, tasks: list[Task]) -> list[Task]:
        """The planned tasks of dead workers are lost at once (a scheme whose plan still
        counts them: a tolerant one); the iteration must still be decodable without them."""
        live = []
        for x in tasks:
            if self.members[x.worker]:
                live.append(x)
            else:
                x.state, x.t_done, x.lost = "cancelled", 0.0, True
                self.n_lost += 1
        if len(live) < len(tasks) and not self.decodable_with({x.task_id for x in live}):
            raise CannotDecode(self._beyond(np.flatnonzero(~self.members).tolist()))
        return live

    def _beyond(self, dead: list[int]) -> str:
        return (f"{self.name} cannot decode without the {len(dead)} failed workers {dead} "
                f"(more than it tolerates: --stragglers-tolerated {self.s}) and does not "
                f"re-issue their work; the run stops (an elastic scheme re-issues it: "
                f"uncoded, frc, cyclic, speed-aware, quorum)")

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
        if not self.slots.arrived(task):  # a piece of a lost task, others still to come
            return Actions()
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
            if task.stage != 1 or task.n == 0 or task.lost:
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

    # ---- membership: workers that die (--on-failure continue) -------------------------------
    def alive(self) -> np.ndarray:
        """Indices of the workers alive (members), ascending."""
        return np.flatnonzero(self.members)

    def set_members(self, alive) -> None:
        """Between iterations: the workers in ``alive`` (a boolean N-vector) are the run's
        members from now on; the others are gone for good. Re-plans for the survivors
        (:meth:`on_members_changed`) when the set changed. Idempotent."""
        alive = np.asarray(alive, bool).reshape(self.N)
        if not alive.any():
            raise ValueError("set_members: no worker left")
        changed = not np.array_equal(alive, self._planned_for)
        self.members, self._planned_for = alive.copy(), alive.copy()
        self._n_dead = self.N - int(alive.sum())
        self.active = (self.active & alive) if (self.active & alive).any() else alive.copy()
        if changed:
            self.on_members_changed()

    def on_members_changed(self) -> None:
        """Rebuild what depends on the member set (a code over the survivors). Default:
        nothing (a scheme that plans from :meth:`alive` or ``active`` needs nothing)."""
        return None

    def on_failure(self, worker: int, t: float) -> Actions:
        """``worker`` failed at ``t`` (seconds since the iteration began), for good.

        Its pending tasks are lost (cancelled, ``lost``; no message will come and nothing
        must be sent to it). If the scheme can still decode from what arrived and what the
        survivors are computing (a coded scheme within its tolerance), nothing else happens;
        otherwise every lost task the decode needs is re-issued to the survivors
        (:meth:`reissue`). Returns the tasks to dispatch. A subclass with its own recovery
        overrides :meth:`react_failure`."""
        worker = int(worker)
        if not self.members[worker]:
            return Actions()
        self.members[worker] = self.active[worker] = False
        self._n_dead += 1
        if not self.members.any():
            raise RuntimeError("every worker failed")
        if not self.active.any():
            self.active = self.members.copy()
        lost = [x for x in self.tasks.values() if x.worker == worker and x.state == "pending"]
        for x in lost:
            x.state, x.t_done, x.lost = "cancelled", t, True
        self.n_lost += len(lost)
        return self.react_failure(worker, lost, t)

    def react_failure(self, worker: int, lost: list[Task], t: float) -> Actions:
        """Default recovery: re-issue lost tasks, in plan order, only while the arrived
        messages and the survivors' pending work cannot decode. A :attr:`tolerant` scheme
        re-issues nothing: it goes on if it can decode without them, else
        :class:`CannotDecode`."""
        acts = Actions()
        if not lost:
            return acts
        possible = {x.task_id for x in self.tasks.values() if x.state in ("pending", "done")}
        if not self.elastic:
            if not self.decodable_with(possible):
                raise CannotDecode(self._beyond(np.flatnonzero(~self.members).tolist()))
            return acts
        for x in lost:
            if self.decodable_with(possible):
                break
            acts += self.reissue(x, t)
            possible |= {y.task_id for y in acts.dispatch}
        return acts

    def holders(self, task: Task) -> np.ndarray:
        """The survivors that may compute ``task``'s partitions (default: every member;
        every rank can load any partition from the dataset file)."""
        return self.alive()

    def reissue(self, task: Task, t: float) -> Actions:
        """Re-issue lost ``task`` to the survivors: its partitions split among
        :meth:`holders` in proportion to speed (at least one each while they last), each
        piece with the same per-partition coefficients, so that the pieces' messages add up
        to ``task``'s. They fill ``task``'s slot, which is complete when all arrived."""
        hold = self.holders(task)
        if len(hold) == 0:
            raise RuntimeError(f"no survivor can take the partitions of task {task.task_id}")
        busy = np.zeros(self.N)  # a survivor's queued work delays its piece
        for x in self.tasks.values():
            if x.state == "pending":
                busy[x.worker] += x.n
        acts = Actions()
        for w, sl in split(task.n, hold, self.speeds(), busy):
            piece = self.new_task(w, task.stage, task.partitions[sl],
                                  None if task.coeffs is None else task.coeffs[sl], t=t)
            piece.slot = task.slot
            acts.dispatch.append(piece)
        self.slots.replace(task, acts.dispatch)
        self.log_notes.append(f"worker {task.worker} failed: task {task.task_id} "
                              f"({task.n} partitions) re-issued to workers "
                              f"{[x.worker for x in acts.dispatch]}")
        return acts

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
    """Classic schemes' view of the data: N equal blocks of K/N micro-partitions (when N
    does not divide K, as after a failure, the first K mod N blocks are one longer)."""
    if K % N == 0:
        b = K // N
        return [np.arange(i * b, (i + 1) * b, dtype=np.int64) for i in range(N)]
    return [np.asarray(x, np.int64) for x in np.array_split(np.arange(K, dtype=np.int64), N)]
