"""``--dead-after M``: a worker that had work but delivered nothing M iterations running is
left out of planning (``scheme.active``); coded schemes carry on without it. Pure: the MPI
coordinator and the simulator apply the same rule to the same rows."""

from __future__ import annotations

import numpy as np


class DeadWorkers:
    def __init__(self, n_workers: int, after: int):
        self.after = int(after)
        self.missed = np.zeros(n_workers, np.int64)
        self.left: list[dict] = []  # {"worker", "rank", "iteration"} of each worker left out

    def update(self, it: int, out: dict, active: np.ndarray) -> list[int]:
        """Count this iteration's misses; mark the workers that reach M inactive (in
        ``active`` and in the iteration's worker rows). Returns the workers left out now."""
        if not self.after:
            return []
        had = np.zeros(len(self.missed), bool)
        had[out["tasks"]["worker"]] = True
        done = np.isfinite(out["workers"]["finish_s"])
        self.missed = np.where(had & ~done, self.missed + 1, np.where(done, 0, self.missed))
        gone = []
        for w in np.flatnonzero((self.missed >= self.after) & active):
            if active.sum() <= 1:  # never leave the scheme without a worker
                break
            active[w] = False
            out["workers"]["active"][w] = 0
            gone.append(int(w))
            self.left.append({"worker": int(w), "rank": int(w) + 1, "iteration": int(it)})
        return gone

    def state_dict(self) -> dict:
        return {"missed": self.missed.copy()}

    def load_state_dict(self, state: dict) -> None:
        if "missed" in state:
            self.missed = np.asarray(state["missed"], np.int64)
