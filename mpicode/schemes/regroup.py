"""Two-stage's recovery from a worker that dies (``--on-failure continue``, pure;
docs/design.md §2.7).

A dead worker is a straggler that never returns. Every stage-1 set it touched (its own sets;
the sets a block of it belonged to a group of) that is still uncovered and has no *live
group* left (a group whose blocks all arrived or still run on survivors; a set without any
group: its own stage-1 task still pending) gets a new group in the coverage map
(:mod:`mpicode.schemes.coverage`): the arrived and running blocks of the group that keeps
most of the set, plus the rest (the dead worker's share of it, or the whole set) split among
the survivors that may load it. A set whose stage-2 group lost a block is re-grouped even
while its own stage-1 task runs: stage 2 gave up waiting for that straggler. The groups
still tile their sets exactly, so the coverage-map decode counts every partition once.

Costs: O(lost tasks + the sets they touch x their groups) a failure, and O(tasks + N log N)
per set re-grouped; at most N - 1 failures a run.
"""

from __future__ import annotations

import numpy as np

from mpicode.schemes.base import Actions, Task
from mpicode.schemes.slots import split


def failed(sc, worker: int, lost: list[Task], t: float) -> Actions:
    """:class:`~mpicode.schemes.two_stage.TwoStage` ``sc``'s worker ``worker`` died at ``t``;
    ``lost``: its pending tasks (``Scheme.on_failure`` cancelled them). The new groups'
    blocks to dispatch."""
    cov, queues = sc.coverage, sc.queues
    sc.idle_pool.active = sc.active  # (the base class may have rebound it)
    sc.idle_pool.discard(int(worker))
    touched: dict[int, None] = {}
    for x in lost:
        queues.left(x)
        if cov.s1.get(x.task_id) is x:
            touched[x.task_id] = None
            cov.touch(x.task_id)
        for _, j in cov.owner.get(x.task_id, ()):
            touched[j] = None
            cov.touch(j)
    sc.changes.bump()
    acts = Actions()
    for j in touched:
        if j in cov.s1 and j not in cov.cover and not live(cov, j):
            acts += regroup(sc, j, t)
    return acts


def live(cov, j: int) -> bool:
    """Has stage-1 set j a live group (blocks all arrived or pending), or, without any
    group, its own task pending (on a live worker)?"""
    if j not in cov.grouped:
        return cov.s1[j].state == "pending"
    return any(g and all(b.state != "cancelled" for b in g) for g in cov.tiles[j])


def regroup(sc, j: int, t: float) -> Actions:
    """A new group of set j: the blocks, arrived or still running on survivors, of the group
    that keeps most of it, plus the rest split among the survivors that may load it, in
    proportion to speed, the least loaded first (:func:`mpicode.schemes.slots.split`), never
    across a home block under ``replicated:R`` (the live holders; when every holder died,
    the R survivors nearest the home block, which load it from the dataset file)."""
    cov = sc.coverage
    x = cov.s1[j]
    keep = max(([b for b in g if b.state != "cancelled"] for g in cov.tiles[j]),
               key=lambda bs: sum(b.n for b in bs), default=[])
    rest = x.partitions
    if keep:
        rest = np.setdiff1d(x.partitions, np.concatenate([b.partitions for b in keep]))
    if not len(rest):  # (a live group covers it all: nothing to re-issue)
        return Actions()
    tau = sc.speeds()
    busy = np.zeros(sc.N)  # partitions a survivor has pending: its piece waits for them
    for w in np.flatnonzero(sc.members).tolist():
        busy[w] = sum(y.n for y in sc.queues.pending(w))
    runs = [rest] if sc.placement.shared else np.split(
        rest, np.flatnonzero(np.diff(rest * sc.N // sc.K)) + 1)
    g2 = cov.new_group(j, keep)
    for b in keep:
        cov.owner[b.task_id].append((g2, j))
    acts = Actions()
    for run in runs:
        hold = sc.placement.survivors_for(run, sc.members)
        for w, sl in split(len(run), hold, tau, busy):
            b = sc.dispatch(w, 2, run[sl], t=t)
            busy[w] += b.n
            cov.owner[b.task_id] = [(g2, j)]
            cov.add_block(j, g2, b)
            acts.dispatch.append(b)
    cov.missing[g2, j] = len(acts.dispatch) + sum(b.state == "pending" for b in keep)
    cov.reissued += len(rest)
    cov.extra_msgs += max(0, len(acts.dispatch) - 1)
    sc.log_notes.append(f"a worker failed: {len(rest)} partitions of stage-1 task {j} "
                        f"re-issued to workers {[b.worker for b in acts.dispatch]}")
    return acts
