"""Two-stage's coverage map: the stage-1 sets, the groups of blocks that tile them, and what
covered each first (pure).

Every stage-1 task j is a set of partitions. A *group* of j is a list of blocks (stage-2
tasks, or the arrived blocks of an earlier group kept by a re-planning round) that tile j's
set exactly; group g of j completes when its last block arrives. ``cover[j]`` records what
covered j first: ``SELF`` (its own message) or a group. The gradient is complete when every
stage-1 set is covered; the decode is then the sum of each set's cover, each partition once.

:class:`Coverage` also counts what the groups cost: the partitions re-issued
(``reissued``) and the messages a group adds beyond one (``extra_msgs``), which the load and
message caps of stage 2 and the re-planning rounds keep in bounds.
"""

from __future__ import annotations

from mpicode.schemes.base import Task

SELF = -1  # cover[j] == SELF: stage-1 task j is covered by its own message


class Coverage:
    """The stage-1 sets of an iteration and their groups."""

    def __init__(self):
        self.s1: dict[int, Task] = {}                 # stage-1 id -> task (live sets)
        self.removed: list[int] = []                  # the workers sets were stolen from
        self.tiles: dict[int, list[list[Task]]] = {}  # stage-1 id -> per group, its blocks
        self.owner: dict[int, list[tuple[int, int]]] = {}  # block id -> [(group, stage-1 id)]
        self.missing: dict[tuple[int, int], int] = {}  # (group, stage-1 id) -> blocks to come
        self.cover: dict[int, int] = {}               # stage-1 id -> SELF or group
        self.n_done = 0          # stage-1 messages arrived
        self.reissued = 0        # partitions stage 2 and the rounds re-issued
        self.extra_msgs = 0      # messages groups add if they win (blocks beyond one)
        self.grouped: set[int] = set()  # stage-1 ids with a block in some group
        self.gen: dict[int, int] = {}   # stage-1 id -> bumped when its groups change
        self.watched: set[int] = set()  # ids whose change sets watch_hit (re-planning's)
        self.watch_hit = False

    def add_set(self, task: Task) -> None:
        self.s1[task.task_id] = task
        self.tiles[task.task_id] = []

    def new_group(self, j: int, blocks: list[Task]) -> int:
        """A new group of stage-1 task j (with these blocks so far); its index."""
        self.tiles[j].append(list(blocks))
        if blocks:
            self.grouped.add(j)
        self.touch(j)
        return len(self.tiles[j]) - 1

    def add_block(self, j: int, g: int, block: Task) -> None:
        self.tiles[j][g].append(block)
        self.grouped.add(j)
        self.touch(j)

    def touch(self, j: int) -> None:
        """Stage-1 task j, its worker or its groups changed (it arrived or was cancelled, its
        worker's rate or running task changed, a block was added, arrived or was cancelled
        or its worker changed): what was derived from them is stale."""
        self.gen[j] = self.gen.get(j, 0) + 1
        if j in self.watched:
            self.watch_hit = True

    def touch_block(self, block_id: int) -> None:
        for _, j in self.owner.get(block_id, ()):
            self.touch(j)

    def remove_set(self, j: int) -> None:
        """Stage-1 task j moved to another worker (stolen before it started)."""
        self.removed.append(self.s1[j].worker)  # it may be free of stage 1 now (Stage2)
        del self.s1[j], self.tiles[j]

    def complete(self) -> bool:
        return len(self.cover) == len(self.s1)

    def live(self, j: int) -> bool:
        """Is j a stage-1 set still running and uncovered?"""
        x = self.s1.get(j)
        return x is not None and j not in self.cover and x.state == "pending"

    def has_groups(self, j: int) -> bool:
        """Has j a group with blocks? (A group left empty had no holder: it is no group.)"""
        return j in self.grouped

    def __len__(self) -> int:
        return len(self.s1)

    def block_arrived(self, block: Task):
        """A block's message arrived: (j, the other groups' blocks) for each set j that the
        block's group now covers (its blocks tile j's set)."""
        out = []
        for g, j in self.owner[block.task_id]:
            self.touch(j)
            self.missing[g, j] -= 1
            if self.missing[g, j] == 0 and j not in self.cover:
                self.cover[j] = g
                mine = {b.task_id for b in self.tiles[j][g]}
                out.append((j, [b for blks in self.tiles[j] for b in blks
                                if b.task_id not in mine]))
        return out

    # ---- the decode ----------------------------------------------------------------------
    def decodable_with(self, task_ids) -> bool:
        """Would these messages cover every stage-1 set (its own, or a whole group)?"""
        for j, blocks in self.tiles.items():
            if j in task_ids:
                continue
            if not any(g and all(b.task_id in task_ids for b in g) for g in blocks):
                return False
        return True

    def chosen(self, partial: bool) -> list[Task]:
        """The messages of the decode: each stage-1 set's own message or the blocks of the
        group that covered it, each partition once. ``partial`` (``max_wait`` passed): an
        uncovered set contributes the arrived blocks of the group that has most of it."""
        out: list[Task] = []
        for j, x in self.s1.items():
            c = self.cover.get(j)
            if c == SELF:
                out.append(x)
            elif c is not None:
                out += self.tiles[j][c]
            elif partial:
                out += max(([b for b in g if b.state == "done"] for g in self.tiles[j]),
                           key=lambda bs: sum(b.n for b in bs), default=[])
            else:
                raise RuntimeError("two-stage: decode() before the gradient is covered")
        return out
