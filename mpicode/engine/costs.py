"""The cost model: every constant and formula for what a run costs in virtual time (pure).

A task's compute is ``n * partition_cost + delay`` (the delay from the straggler model);
the partition cost is ``--partition-cost``, or the kernel's constant model
(:func:`model_partition_cost`: :data:`KERNEL_OVERHEAD_S` + rows x features /
:data:`KERNEL_ELEMENTS_PER_S`, or a profile's ``kernel_elements_per_s``), or a measurement
(:func:`measure_partition_cost`); :func:`run_partition_cost` picks one for a run.

Besides compute and delays, the MPI runtime's costs:

Used by the event loop in virtual time (``mpicode simulate`` and ``train --delay-mode
virtual``), so a calibrated simulation is the twin of a real run on this machine:

* ``dispatch_s``: a task starts on its worker this long after the coordinator decided it
  (the TASK message, the model's broadcast, the worker noticing it);
  ``redispatch_s`` (default: the same) for a task decided during the iteration (stage 2, a
  re-plan, a steal, a re-issue): one worker woken, not all of them at once;
* ``msg_latency_s + bytes / msg_bandwidth``: each result message, with the ideal channel,
  reaches the coordinator this long after the task's compute finished (the worker is free at
  once: the send is asynchronous);
* ``poll_s``: rank 0 notices a message only when it polls; waiting, it polls with the
  runtime's backoff (:class:`mpicode.engine.clock.Backoff`: intervals growing 1.25x from
  10 us to ``poll_s``, each overshooting by ``poll_s`` beyond the longest sleep of 1 ms,
  restarted at every event), so results that land within one interval are seen
  together, and one that lands just after an event is seen at once;
* ``coord_log_s``, ``coord_decode_s``, ``coord_update_s``, ``coord_eval_s``: rank 0's
  per-iteration work (the previous row's bookkeeping, the decode, the update, an
  evaluation when one is due), added to each iteration's virtual time and logged in the row's
  phases of the same names, so that rows still tile the run's time.

Every value defaults to 0 (and the bandwidth to infinite): then nothing changes, bit for bit.
``mpicode calibrate`` measures them and writes a profile (:mod:`mpicode.profile`).

Besides these, rank 0 is a server (:class:`Rank0Cost`, ``--coordinator-cost
model|measured|zero``): each of its actions (a result, a tick, the plan, the decode, a slot
step, the row bookkeeping) occupies it for a duration that depends on the work the action
did (:class:`Work`); see docs/design.md §2.6.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, fields

import numpy as np

from mpicode.engine import rank0_reference
from mpicode.engine.clock import BACKOFF_GROWTH, BACKOFF_HI, BACKOFF_LO
from mpicode.profile import CALLS, FEATURES  # noqa: F401  (the cost model's vocabulary)

# ---- compute: the partition cost -----------------------------------------------------------
#
# The default partition cost: a documented constant model of the fused kernel (fitted on the
# project's 2-core machine for data that fits in cache), so that two runs with the same options
# are bit-identical anywhere. ``--measure-partition-cost`` times the kernel instead; a profile's
# ``kernel_elements_per_s`` (mpicode calibrate, which fits it against the same overhead)
# replaces the rate.
KERNEL_OVERHEAD_S = 1e-6
KERNEL_ELEMENTS_PER_S = 2e9


def model_partition_cost(rows: float, features: int,
                         elements_per_s: float | None = None) -> float:
    """Seconds for one partition of ``rows x features``: the constant model, or a calibrated
    profile's ``kernel_elements_per_s``."""
    return KERNEL_OVERHEAD_S + rows * features / (elements_per_s or KERNEL_ELEMENTS_PER_S)


def measure_partition_cost(rows: int, features: int, repeats: int = 20) -> float:
    """Seconds the fused kernel takes for one partition of this shape (median, warmed up)."""
    from mpicode.numerics import kernels  # lazy: numba (~1 s) only to measure
    rng = np.random.default_rng(0)
    X = rng.standard_normal((max(1, rows), features))
    y = (rng.random(max(1, rows)) < 0.5).astype(float)
    w = np.zeros(features)
    g = np.zeros(features)
    kernels.logistic_grad(X, y, w, g, 1.0)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        kernels.logistic_grad(X, y, w, g, 1.0)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def run_partition_cost(cfg, problem, K: int) -> float:
    """A simulation's partition cost: ``--partition-cost``, else the MLP's own measured cost,
    else the kernel model (or a measurement, with ``--measure-partition-cost``) for the
    partition's shape (``problem``'s, or ``--samples``/``--features`` without one)."""
    if cfg.partition_cost is not None:
        return cfg.partition_cost
    if problem is not None and problem.model == "mlp":  # the MLP's own cost model
        return problem.partition_cost()
    if problem is not None:
        rows, feats = problem.n / K, problem.dim
    else:
        rows, feats = max(1.0, cfg.samples / K), cfg.features
    if cfg.measure_partition_cost:
        return measure_partition_cost(int(round(rows)), feats)
    return model_partition_cost(rows, feats, cfg.kernel_elements_per_s)


def virtual_partition_cost(cfg, problem, K: int) -> float:
    """``train --delay-mode virtual``'s partition cost: ``--partition-cost``, else the kernel
    model when a profile gives the kernel's rate, else 0 (the real compute is the workers')."""
    if cfg.partition_cost is not None:
        return cfg.partition_cost
    if cfg.kernel_elements_per_s is not None:
        return model_partition_cost(problem.n / K, problem.dim, cfg.kernel_elements_per_s)
    return 0.0


# ---- rank 0 as a server (docs/design.md §2.6) ---------------------------------------------------
#
# Every coordinator action occupies rank 0 for a duration. In virtual time the event loop
# charges it (a message that lands while rank 0 is busy waits; a decision takes effect when
# rank 0 has made it); on the wall clock it is measured. What an action costs is a function
# of the work it did, described by :class:`Work`.

@dataclass(frozen=True)
class Work:
    """What one coordinator action did (its features), and the MPI messages rank 0 sends and
    receives for it (``sends``, ``recvs``)."""

    call: str
    n: int
    tasks: int = 0
    parts: int = 0
    msgs: int = 0
    sends: int = 0
    recvs: int = 0

    def features(self) -> tuple[float, ...]:
        return (1.0, math.log2(max(self.n, 1)), float(self.n), float(self.tasks),
                float(self.parts), float(self.msgs))


def work_of(call: str, n: int, acts=None, *, tasks: int = 0, msgs: int = 0, recvs: int = 0,
            sends: int = 0) -> Work:
    """The :class:`Work` of an action whose outcome is ``acts`` (an ``Actions``, or None):
    each dispatched or cancelled task is one MPI send (TASK or CANCEL)."""
    parts = 0
    if acts is not None:
        disp, canc = acts.dispatch, acts.cancel
        tasks += len(disp) + len(canc)
        sends += len(disp) + len(canc)
        parts = sum(t.n for t in disp)
    return Work(call, n, tasks=tasks, parts=parts, msgs=msgs, sends=sends, recvs=recvs)


class Rank0Cost:
    """``--coordinator-cost zero``: rank 0's actions take no time (the idealisation of
    earlier versions, kept for comparison)."""

    mode = "zero"
    needs_cpu = False  # does charge() read the measured CPU time?

    def split(self, policy: str, work: Work, cpu_s: float = 0.0) -> tuple[float, float]:
        """(seconds in the policy's own computation, seconds in rank 0's MPI calls)."""
        return 0.0, 0.0

    def charge(self, policy: str, work: Work, cpu_s: float = 0.0) -> float:
        a, b = self.split(policy, work, cpu_s)
        return a + b


class ModelCost(Rank0Cost):
    """``--coordinator-cost model`` (the default): deterministic, so equal options give
    bit-identical runs. An action of policy P (a scheme's or scheduler's name, or
    ``engine`` for the row bookkeeping) costs ::

        factor * sum_j coef[P][call][j] * feature_j  +  send_s * sends  +  recv_s * recvs

    ``coef`` is the in-process CPU model fitted by ``mpicode calibrate`` on each policy at
    several N (features: :data:`FEATURES`; policies it does not know use the ``default``
    entry), ``factor`` the ratio of rank 0's wall time under MPI to that CPU time, and
    ``send_s``/``recv_s`` the per-message cost of rank 0's MPI calls."""

    mode = "model"

    def __init__(self, table: dict, factor: float = 1.0, send_s: float = 0.0,
                 recv_s: float = 0.0):
        self.table = table
        self.factor, self.send_s, self.recv_s = float(factor), float(send_s), float(recv_s)
        self._cache: dict[tuple[str, str], tuple[float, ...]] = {}

    def coefficients(self, policy: str, call: str) -> tuple[float, ...]:
        key = (policy, call)
        c = self._cache.get(key)
        if c is None:
            entry = self.table.get(policy) or self.table.get("default", {})
            c = tuple(float(x) for x in (entry.get(call) or
                                         self.table.get("default", {}).get(call) or ()))
            c = c + (0.0,) * (len(FEATURES) - len(c))
            self._cache[key] = c
        return c

    def cpu_s(self, policy: str, work: Work) -> float:
        """The in-process CPU seconds the model predicts for ``work`` (before ``factor``)."""
        c = self.coefficients(policy, work.call)
        f = work.features()
        return c[0] + c[1] * f[1] + c[2] * f[2] + c[3] * f[3] + c[4] * f[4] + c[5] * f[5]

    def split(self, policy: str, work: Work, cpu_s: float = 0.0) -> tuple[float, float]:
        return (self.factor * self.cpu_s(policy, work),
                self.send_s * work.sends + self.recv_s * work.recvs)


class MeasuredCost(ModelCost):
    """``--coordinator-cost measured``: the thread CPU time the real call took in this
    process, times ``factor``, plus the same per-message MPI costs. Not reproducible: two
    runs differ with the machine's load."""

    mode = "measured"
    needs_cpu = True

    def split(self, policy: str, work: Work, cpu_s: float = 0.0) -> tuple[float, float]:
        return self.factor * cpu_s, self.send_s * work.sends + self.recv_s * work.recvs


ZERO_RANK0 = Rank0Cost()


def rank0_cost(mode: str, table: dict | None = None, factor: float | None = None,
               send_s: float | None = None, recv_s: float | None = None) -> Rank0Cost:
    """The coordinator's cost of ``--coordinator-cost MODE`` (``model``, ``measured`` or
    ``zero``); what is not given comes from the shipped reference profile
    (:mod:`mpicode.engine.rank0_reference`)."""
    if mode == "zero":
        return ZERO_RANK0
    ref = rank0_reference
    if isinstance(table, str):  # the option's canonical JSON text ("" : the reference's)
        table = json.loads(table) if table else None
    table = ref.TABLE if table is None else table
    factor = ref.FACTOR if factor is None else factor
    send_s = ref.SEND_S if send_s is None else send_s
    recv_s = ref.RECV_S if recv_s is None else recv_s
    cls = {"model": ModelCost, "measured": MeasuredCost}.get(mode)
    if cls is None:
        raise ValueError(f"coordinator cost must be model, measured or zero, got {mode!r}")
    return cls(table, factor, send_s, recv_s)


@dataclass(frozen=True)
class CostModel:
    dispatch_s: float = 0.0
    redispatch_s: float | None = None    # None: dispatch_s
    msg_latency_s: float = 0.0
    msg_bandwidth: float | None = None   # bytes/s; None: infinite
    poll_s: float = 0.0                  # 0: a message is noticed the moment it lands
    coord_log_s: float = 0.0
    coord_decode_s: float = 0.0
    coord_update_s: float = 0.0
    coord_eval_s: float = 0.0
    rank0: Rank0Cost = ZERO_RANK0        # rank 0's actions (--coordinator-cost)

    @classmethod
    def from_config(cls, cfg) -> CostModel:
        """The cost model of a configuration (options of the same names; absent: 0; the
        coordinator's cost: ``--coordinator-cost`` and the ``rank0_*`` options, absent:
        zero)."""
        def get(name):
            return getattr(cfg, name, None) if hasattr(cfg, "values") else cfg.get(name)
        kw = {}
        for f in fields(cls):
            v = get(f.name)
            if f.name != "rank0" and v is not None:
                kw[f.name] = float(v)
        mode = get("coordinator_cost")
        if mode:
            kw["rank0"] = rank0_cost(mode, get("rank0_table"), get("rank0_factor"),
                                     get("rank0_send_s"), get("rank0_recv_s"))
        return cls(**kw)

    def dispatch_at(self, t: float) -> float:
        """The dispatch latency of a task decided ``t`` seconds into its iteration."""
        return self.dispatch_s if t <= 0.0 or self.redispatch_s is None else self.redispatch_s

    def message_s(self, nbytes: float) -> float:
        """Seconds a result message of ``nbytes`` takes from its worker to the coordinator."""
        t = self.msg_latency_s
        if self.msg_bandwidth is not None and math.isfinite(self.msg_bandwidth):
            t += nbytes / self.msg_bandwidth
        return t

    def noticed(self, t_event: float, t_arrival: float) -> float:
        """When rank 0, whose last event (the backoff's restart) was at ``t_event``, notices
        a message that landed at ``t_arrival``: its first poll at or after it. A ``poll_s``
        above the backoff's longest sleep is that sleep plus the machine's overshoot
        (``mpicode calibrate``), and every sleep of the ramp overshoots by as much."""
        if self.poll_s <= 0 or t_arrival <= t_event:
            return t_arrival
        over = max(0.0, self.poll_s - BACKOFF_HI)
        t, dt = t_event, BACKOFF_LO
        while dt < self.poll_s - over:  # the ramp
            t += dt + over
            if t >= t_arrival:
                return t
            dt *= BACKOFF_GROWTH
        return t + math.ceil((t_arrival - t) / self.poll_s) * self.poll_s

    @property
    def coordinator_s(self) -> float:
        """Rank 0's per-iteration cost without an evaluation."""
        return self.coord_log_s + self.coord_decode_s + self.coord_update_s

    @property
    def is_zero(self) -> bool:
        return (self.dispatch_s == 0.0 and not self.redispatch_s
                and self.message_s(1.0) == 0.0 and self.poll_s == 0.0
                and self.coordinator_s == 0.0 and self.coord_eval_s == 0.0
                and self.rank0.mode == "zero")


ZERO = CostModel()

