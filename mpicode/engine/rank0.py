"""Rank 0 as a server: each coordinator action is run, measured and charged here (pure).

The coordinator is one process serving N workers. Every action it takes (the scheme's plan,
a result, a tick, the decode, the iteration's close, an uplink slot step, the row
bookkeeping) occupies it for a while. On the wall clock (``train``) that time is real and is
measured; in virtual time (``simulate``, ``train --delay-mode virtual``) the event loop
charges it from the coordinator cost model (:class:`mpicode.engine.costs.Rank0Cost`): a
message that lands while rank 0 is busy waits, and a decision takes effect when rank 0 has
made it (docs/design.md §2.6).

Per iteration this records ``policy_s`` (rank 0's time in scheme and scheduler calls:
measured on the wall clock, charged in virtual time) and the time it was busy with every
action (charged; on the wall clock the run loop derives it from the time rank 0 slept).
"""

from __future__ import annotations

import time

from mpicode.engine.costs import ZERO_RANK0, Rank0Cost, Work, work_of


class Rank0:
    """The coordinator's actions of one run.

    Parameters
    ----------
    cost : Rank0Cost
        What an action costs in virtual time (``zero``: nothing).
    n_workers : int
        N, a feature of every action's work.
    virtual : bool
        Virtual time (charge) or the wall clock (measure).
    record : list or None
        If given, every action is appended as ``(policy, Work, cpu_s, wall_s)``: what
        ``mpicode calibrate`` fits the cost model from.
    """

    def __init__(self, cost: Rank0Cost = ZERO_RANK0, n_workers: int = 1, *,
                 virtual: bool = True, record: list | None = None):
        self.cost, self.N, self.virtual, self.record = cost, int(n_workers), virtual, record
        # virtual time with a cost: actions take time (else they are instantaneous, as before)
        self.charging = virtual and cost.mode != "zero"
        self.wall = not virtual or record is not None
        self.cpu = (virtual and cost.needs_cpu) or record is not None
        self.new_iteration()

    def new_iteration(self) -> None:
        self.policy_s = 0.0  # time in scheme/scheduler calls (charged, or measured)
        self.busy_s = 0.0    # time charged for every action (virtual time)

    def act(self, policy: str, call: str, fn, *args, policy_call: bool = True, count=None,
            tasks: int = 0, msgs: int = 0, recvs: int = 0, sends: int = 0):
        """Run ``fn(*args)`` as rank 0's action ``call`` of ``policy``; returns (its result,
        the seconds charged). If the result has ``dispatch``/``cancel`` lists (``Actions``),
        they are part of the action's work; ``count(result)`` may add counts (a dict of
        ``tasks``, ``msgs``, ``recvs``, ``sends``)."""
        cpu = wall = 0.0
        if self.cpu:
            c0, w0 = time.thread_time(), time.perf_counter()
            out = fn(*args)
            wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
        elif self.wall:
            w0 = time.perf_counter()
            out = fn(*args)
            wall = time.perf_counter() - w0
        else:
            out = fn(*args)
        if not (self.charging or self.record is not None):
            if policy_call:
                self.policy_s += wall
            return out, 0.0
        acts = out if hasattr(out, "dispatch") else None
        kw = {"tasks": tasks, "msgs": msgs, "recvs": recvs, "sends": sends}
        if count is not None:
            for k, v in count(out).items():
                kw[k] += v
        work = work_of(call, self.N, acts, **kw)
        return out, self._account(policy, work, cpu, wall, policy_call)

    def charge(self, policy: str, work: Work, *, policy_call: bool = False) -> float:
        """Charge an action that was not run here (the row bookkeeping, whose work the run
        loop knows); returns the seconds."""
        return self._account(policy, work, 0.0, 0.0, policy_call)

    def _account(self, policy, work, cpu, wall, policy_call) -> float:
        if self.record is not None:
            self.record.append((policy, work, cpu, wall))
        if not self.charging:
            if policy_call:
                self.policy_s += wall
            return 0.0
        p, m = self.cost.split(policy, work, cpu)
        if policy_call:
            self.policy_s += p  # the policy's own computation, not rank 0's MPI calls
        self.busy_s += p + m
        return p + m
