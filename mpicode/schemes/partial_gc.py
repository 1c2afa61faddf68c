"""``partial-gc``: gradient coding that uses the work of partial stragglers.

Ramamoorthy, Meng, Girimaji, *Leveraging partial stragglers within gradient coding*,
NeurIPS 2024 (arXiv 2405.19509). The data are m = N chunks (of K/N micro-partitions each);
chunk j is assigned to gamma = s + 1 workers, and every worker holds gamma chunks (the class
of assignments for which the paper optimises the chunk order: as many chunks as workers, the
same replication for every chunk). Every worker computes its chunks one after another in a
fixed order and sends each chunk's gradient as soon as it is computed, so the master uses
whatever a slow ("partial") straggler did finish instead of waiting for whole workers. The
gradient is exact as soon as every chunk has arrived from one of its holders: the decode takes
the first copy of each chunk with weight 1 (no linear system is solved, so nothing is
ill-conditioned), which is the paper's exact decode at communication parameter l = 1 (an
mpicode message is a whole gradient, not a d/l-dimensional piece of one).

The order of the chunks inside the workers decides how much the cluster must compute, in the
worst case, before every chunk has a copy: ``q_max`` (:func:`q_max`). For a biregular
assignment the least possible value is reached when every chunk sits at every position
0..gamma-1 exactly once across its gamma holders; :func:`optimal_order` finds such an order
by splitting the gamma-regular bipartite graph of workers and chunks into gamma perfect
matchings (Konig's edge-colouring theorem; each matching found by augmenting paths) and
giving matching k position k. ``--pgc-order random`` is the paper's baseline (a seeded random
order per worker). ``--pgc-assignment cyclic`` (the default) is Tandon et al.'s cyclic
assignment, worker i holding chunks i..i+s (mod N), whose natural order already is optimal;
``random`` draws a random gamma-regular assignment (a random Latin rectangle), where the
order has to be computed.

In mpicode each chunk is one task; a worker's tasks queue in the chosen order, so chunk by
chunk sending is one message per finished task. Where the implementation had to choose
something the paper leaves open: docs/design.md §3.4a.
"""

from __future__ import annotations

import numpy as np

from mpicode.options import Option, UsageError, _bool
from mpicode.registry import register_scheme
from mpicode.schemes.base import Actions, Decoding, Scheme, equal_blocks, multiple_of_workers

ORDERS = ("optimal", "random")
ASSIGNMENTS = ("cyclic", "random")

PGC_ORDER = Option("pgc_order", str, "optimal",
                   "partial-gc: order of the chunks inside each worker", choices=ORDERS,
                   group="partial-gc")
PGC_ASSIGNMENT = Option("pgc_assignment", str, "cyclic",
                        "partial-gc: which s+1 workers hold each chunk", choices=ASSIGNMENTS,
                        group="partial-gc")
PGC_CANCEL = Option("pgc_cancel_covered", _bool, False,
                    "partial-gc: cancel a chunk's other copies once one arrived (not in the "
                    "paper, whose workers compute every chunk they hold)",
                    flag_only=True, group="partial-gc")


# ---- assignments and orders (pure functions, tested on their own) --------------------------
def cyclic_assignment(n: int, gamma: int) -> list[list[int]]:
    """Worker i holds chunks i, i+1, ..., i+gamma-1 (mod n), in that order."""
    return [[(i + j) % n for j in range(gamma)] for i in range(n)]


def _augment(root: int, adj: list[list[int]], match_l: list[int], match_r: list[int]) -> bool:
    """Kuhn's step: find an augmenting path from the free left vertex ``root`` (iterative
    depth-first search) and flip it; False if there is none."""
    seen = [False] * len(match_r)
    parent: dict[int, int] = {}        # right vertex -> the left vertex that reached it
    stack = [(root, iter(adj[root]))]
    while stack:
        u, nbrs = stack[-1]
        v = next(nbrs, None)
        if v is None:
            stack.pop()
            continue
        if seen[v]:
            continue
        seen[v] = True
        parent[v] = u
        w = match_r[v]
        if w >= 0:
            stack.append((w, iter(adj[w])))
            continue
        while True:                    # v is free: flip the path back to the root
            u = parent[v]
            prev = match_l[u]
            match_l[u], match_r[v] = v, u
            if u == root:
                return True
            v = prev
    return False


def perfect_matching(adj: list[list[int]], n_right: int) -> list[int]:
    """A perfect matching of a bipartite graph (left vertex u -> neighbours ``adj[u]``), as
    the right vertex of every left one; ValueError if there is none.

    Greedy first (each left vertex takes its first free neighbour, in ``adj`` order, so an
    order that already is a matching is kept), then Kuhn's augmenting paths for the rest."""
    match_l = [-1] * len(adj)
    match_r = [-1] * n_right
    for u, nbrs in enumerate(adj):
        for v in nbrs:
            if match_r[v] < 0:
                match_l[u], match_r[v] = v, u
                break
    for u in range(len(adj)):
        if match_l[u] < 0 and not _augment(u, adj, match_l, match_r):
            raise ValueError("no perfect matching")
    return match_l


def random_regular_assignment(n: int, gamma: int, rng) -> list[list[int]]:
    """A random assignment of n chunks to n workers, gamma each way: a random Latin
    rectangle (gamma rows, each a random perfect matching avoiding the earlier rows; one
    always exists, Hall's theorem). Worker i's list is in row order, so it is itself an
    optimal order; :func:`optimal_order` is not told that."""
    held: list[set[int]] = [set() for _ in range(n)]
    out: list[list[int]] = [[] for _ in range(n)]
    for _ in range(gamma):
        adj = []
        for i in range(n):   # every allowed chunk, in a random order (numpy: O(n) in C)
            p = rng.permutation(n)
            adj.append(p[~np.isin(p, list(held[i]))] if held[i] else p)
        m = perfect_matching(adj, n)
        for i, c in enumerate(m):
            held[i].add(int(c))
            out[i].append(int(c))
    for i in range(n):  # hide the rows: sorted, as an assignment (a set per worker) reads
        out[i].sort()
    return out


def check_biregular(assign: list[list[int]], n_chunks: int) -> int:
    """gamma if every worker holds gamma distinct chunks and every chunk has gamma holders
    (the class the paper's order algorithm treats); ValueError otherwise."""
    if not assign:
        raise ValueError("no worker")
    gamma = len(assign[0])
    holders = np.zeros(n_chunks, np.int64)
    for a in assign:
        if len(a) != gamma or len(set(a)) != gamma:
            raise ValueError("every worker must hold the same number of distinct chunks")
        holders[list(a)] += 1
    if len(assign) != n_chunks or not np.all(holders == gamma):
        raise ValueError("every chunk must have as many holders as a worker has chunks, "
                         "with as many chunks as workers")
    return gamma


def optimal_order(assign: list[list[int]], n_chunks: int) -> list[list[int]]:
    """Each worker's chunks in an order that minimises :func:`q_max`: position k of every
    worker is perfect matching k of a decomposition of the gamma-regular worker-chunk graph
    into gamma perfect matchings (each found on the graph the earlier ones left, which is
    still regular, so one exists). Every chunk then sits at each position exactly once."""
    gamma = check_biregular(assign, n_chunks)
    left = [list(a) for a in assign]
    order: list[list[int]] = [[] for _ in assign]
    for _ in range(gamma):
        m = perfect_matching(left, n_chunks)
        for w, c in enumerate(m):
            order[w].append(c)
            left[w].remove(c)
    return order


def q_max(order: list[list[int]], n_chunks: int) -> int:
    """The worst case, over how far each worker got, of the chunk computations the cluster
    must do before every chunk has a copy: one more than the most it can do while some chunk
    j is still missing (every worker not holding j done, each holder of j stopped just
    before it)."""
    total = sum(len(o) for o in order)
    pos_sum = np.zeros(n_chunks, np.int64)   # sum of j's positions over its holders
    held = np.zeros(n_chunks, np.int64)      # chunks of j's holders
    for o in order:
        for k, c in enumerate(o):
            pos_sum[c] += k
            held[c] += len(o)
    return int((total - held + pos_sum).max()) + 1


def q_max_lower_bound(n: int, gamma: int) -> int:
    """:func:`q_max` of an optimal order of a biregular assignment (n chunks, gamma each)."""
    return gamma * (n - gamma) + gamma * (gamma - 1) // 2 + 1


# ---- the scheme ------------------------------------------------------------------------------
@register_scheme
class PartialGC(Scheme):
    """Chunk-by-chunk gradient coding over a biregular assignment (module docstring)."""

    name = "partial-gc"
    options = Scheme.options + (PGC_ORDER, PGC_ASSIGNMENT, PGC_CANCEL)
    # partial_used: chunks the decode took from workers that did not finish all they held;
    # chunks_in: chunk messages that arrived before the decode
    log_fields = {"partial_used": "i4", "chunks_in": "i4"}

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        """N chunks of K/N partitions (N | K); s + 1 copies of each, so s < N."""
        super().validate_size(cfg, n_workers, n_partitions)
        multiple_of_workers(cls.name, n_workers, n_partitions)

    def __init__(self, n_workers, n_partitions, *, pgc_order="optimal",
                 pgc_assignment="cyclic", pgc_cancel_covered=False, **kw):
        super().__init__(n_workers, n_partitions, **kw)
        if pgc_order not in ORDERS or pgc_assignment not in ASSIGNMENTS:
            raise UsageError(f"partial-gc: unknown order {pgc_order!r} or assignment "
                             f"{pgc_assignment!r}")
        if not 0 <= self.s < self.N or self.K % self.N:
            raise ValueError(f"partial-gc needs s < N and N | K (N={self.N}, K={self.K}, "
                             f"s={self.s})")
        self.gamma = self.s + 1
        self.cancel_covered = bool(pgc_cancel_covered)
        self.blocks = equal_blocks(self.N, self.K)
        rng = np.random.default_rng([self.seed, 2405_19509])
        if pgc_assignment == "cyclic":
            self.assignment = cyclic_assignment(self.N, self.gamma)
        else:
            self.assignment = random_regular_assignment(self.N, self.gamma, rng)
        if pgc_order == "optimal":
            self.order = optimal_order(self.assignment, self.N)
        else:
            self.order = [[int(c) for c in rng.permutation(a)] for a in self.assignment]
        self.q_max = q_max(self.order, self.N)
        self._chunk: dict[int, int] = {}
        self._copies: list[list] = []
        self._cover: list[int] = []
        self._n_cov = 0
        self._noted = False

    def plan(self):
        self._chunk, self._copies = {}, [[] for _ in range(self.N)]
        self._cover, self._n_cov = [-1] * self.N, 0
        if not self._noted:  # once per process: the order's worst case, for the reader
            self._noted = True
            self.log_notes.append(f"partial-gc: {self.gamma} copies of {self.N} chunks, "
                                  f"q_max {self.q_max} chunk computations (optimum "
                                  f"{q_max_lower_bound(self.N, self.gamma)})")
        tasks = []
        for w, chunks in enumerate(self.order):   # queued on the worker in this order
            for c in chunks:
                task = self.new_task(w, 1, self.blocks[c])
                self._chunk[task.task_id] = c
                self._copies[c].append(task)
                tasks.append(task)
        return tasks

    def react(self, task, t):
        c = self._chunk[task.task_id]
        if self._cover[c] >= 0:
            return Actions()
        self._cover[c] = task.task_id
        self._n_cov += 1
        if self.cancel_covered:
            return Actions(cancel=self._cancel(self._copies[c], t))
        return Actions()

    def done(self):
        return self._n_cov == self.N

    def decodable_with(self, task_ids):
        chunks = {self._chunk[i] for i in task_ids if i in self._chunk}
        return len(chunks) == self.N

    def decode(self):
        weights = {}
        for tid in self._cover:
            if tid >= 0:
                self.tasks[tid].used = True
                weights[tid] = 1.0
        covered = sum(len(self.blocks[c]) for c in range(self.N) if self._cover[c] >= 0)
        return Decoding(weights, covered / self.K)

    def end(self, t):
        out = super().end(t)
        unfinished = {x.worker for x in self.tasks.values() if x.state != "done"}
        out["partial_used"] = sum(1 for tid in self._cover
                                  if tid >= 0 and self.tasks[tid].worker in unfinished)
        out["chunks_in"] = sum(1 for x in self.tasks.values() if x.state == "done")
        return out
