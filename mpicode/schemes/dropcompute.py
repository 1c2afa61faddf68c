"""``dropcompute``: every worker computes until a time threshold, then sends what it has.

Giladi, Gottlieb, Shkolnik, Karnieli, Banner, Hoffer, Levy, Soudry, *DropCompute: simple and
more robust distributed synchronous training via compute variance reduction*, NeurIPS 2023
(arXiv 2306.10598; reference code: github.com/paper-submissions/dropcompute,
``deepspeed-bert/run_pretraining.py``). Worker i holds block i (K/N micro-partitions, the
paper's micro-batches of gradient accumulation) and computes them one after another; once its
compute time on the step reaches the threshold tau it starts no further micro-batch and sends
the sum over those it finished, one message as in the paper's all-reduce. The coordinator
divides the sum of the messages by the fraction of the K partitions they hold (``coverage``),
so the step averages over the samples actually computed (``--dc-normalise computed``, the
default); ``nominal`` keeps the reference code's division by the full batch (weight 1).

The threshold is tuned from measured compute times as the reference code does
(``get_best_threshold``): the first ``--dc-tune-iterations`` iterations run without one and
record every worker's time per micro-partition; then, over 200 thresholds between the
earliest finish of a worker's 6th micro-batch (its last when it has fewer) and the latest
finish of any, the one that maximises the mean effective speed-up ``(1 - drop rate) /
(1 - time saved / step time) - 1`` is kept for the rest of the run (``--dc-threshold T``
fixes it instead). The threshold travels in the TASK message as a compute budget
(``Task.time_limit``, docs/design.md §3.4a on why), so each worker stops on its own clock and
no extra message is needed; a worker that stopped early says after how many partitions
(``PARTIAL``).

Not exact: the rescaled sum drops the partitions not computed. With ``coverage`` c the
decoded sum g' of ``computed`` normalisation differs from the full sum g by
``|D| (mean of the computed g_k - mean of the dropped g_k)``, so ``|g' - g| <= 2 (1 - c) K
max_k |g_k|`` (``tests/unit/test_dropcompute.py`` holds it to that), and it is unbiased only
if which partitions are dropped is independent of their gradients, which a persistent
straggler's fixed block is not (the bias the experiments measure as for
``ignore-stragglers``).
"""

from __future__ import annotations

import math

import numpy as np

from mpicode.options import Option, _optional_float, optional_positive, positive
from mpicode.registry import register_scheme
from mpicode.schemes.base import Decoding, Scheme, equal_blocks, multiple_of_workers

NORMALISE = ("computed", "nominal")
CANDIDATES = 200      # thresholds tried, as in the reference code
MIN_MICROBATCHES = 6  # the reference code's lowest threshold: after 5 accumulations

DC_THRESHOLD = Option("dc_threshold", _optional_float, None,
                      "dropcompute: compute threshold in seconds (default: tuned from the "
                      "first --dc-tune-iterations)", check=optional_positive,
                      group="dropcompute")
DC_TUNE = Option("dc_tune_iterations", int, 10,
                 "dropcompute: iterations measured without a threshold before it is tuned",
                 check=positive, group="dropcompute")
DC_NORMALISE = Option("dc_normalise", str, "computed",
                      "dropcompute: divide the sum by the partitions computed (computed) or "
                      "by all K (nominal, the reference code)", choices=NORMALISE,
                      group="dropcompute")


def best_threshold(per_partition: np.ndarray, step_s: np.ndarray, m: int) -> float:
    """The reference code's threshold search for workers that start no micro-batch past the
    threshold.

    Parameters
    ----------
    per_partition : (steps, workers) array
        Seconds per micro-partition each worker took in each measured step (its micro-batches
        take equal time: the delay is spread evenly over them).
    step_s : (steps,) array
        Each step's measured duration (compute and everything else: the "raw" step time).
    m : int
        Micro-partitions per worker.

    Returns the threshold (seconds) with the largest mean effective speed-up
    ``(1 - drop rate) / (1 - saved / step time) - 1``, ``saved`` being how much earlier the
    slowest worker stops; of equally good candidates the largest (so nothing is dropped when
    nothing helps).
    """
    u = np.asarray(per_partition, np.float64)
    u = np.where(np.isfinite(u) & (u > 0), u, np.nan)
    if m <= 0 or not np.isfinite(u).any():
        return math.inf
    full = u * m                                        # each worker's whole block
    compute = np.nanmax(full, axis=1)                   # the step's compute phase
    overhead = max(0.0, float(np.nanmean(step_s) - np.nanmean(compute)))
    raw = compute + overhead
    k0 = min(MIN_MICROBATCHES, m)
    lo, hi = float(np.nanmin(u * k0)), float(np.nanmax(full))
    if not hi > lo:
        return hi
    taus = np.linspace(lo, hi, CANDIDATES)[:, None, None]
    # partitions a worker starts: j = 0 always, then each j with j * u < tau
    kept = np.clip(np.ceil(taus / u[None]), 1, m)       # (candidates, steps, workers)
    kept = np.where(np.isfinite(u)[None], kept, m)
    stop = np.nanmax(kept * u[None], axis=2)            # when the slowest one stops
    saved = compute[None] - stop
    speedup = saved / raw[None]
    drop = 1.0 - kept.mean(axis=2) / m
    effective = (1.0 - drop) / (1.0 - speedup) - 1.0
    mean = effective.mean(axis=1)
    # ties (a flat objective: with no overhead the fast workers are busy until any
    # threshold) go to the largest threshold, which drops least; the reference code's
    # argmax took the smallest
    best = int(np.flatnonzero(mean >= mean.max() - 1e-12 * max(1.0, abs(mean.max())))[-1])
    return float(taus[best, 0, 0])


@register_scheme
class DropCompute(Scheme):
    """Uncoded blocks with a compute threshold (module docstring)."""

    name = "dropcompute"
    exact = False
    options = Scheme.options + (DC_THRESHOLD, DC_TUNE, DC_NORMALISE)
    # threshold_s: the compute budget of the iteration's tasks (NaN while tuning);
    # dropped: partitions not computed
    log_fields = {"threshold_s": "f8", "dropped": "i4"}

    @classmethod
    def validate_size(cls, cfg, n_workers, n_partitions):
        """N equal blocks (N | K); it waits for every worker, so any s."""
        multiple_of_workers(cls.name, n_workers, n_partitions)

    def __init__(self, n_workers, n_partitions, *, dc_threshold=None, dc_tune_iterations=10,
                 dc_normalise="computed", **kw):
        super().__init__(n_workers, n_partitions, **kw)
        if dc_normalise not in NORMALISE:
            raise ValueError(f"dropcompute: dc_normalise must be one of {NORMALISE}")
        self.fixed = dc_threshold is not None
        self.threshold = float(dc_threshold) if self.fixed else math.nan
        self.tune_iterations = int(dc_tune_iterations)
        self.normalise = dc_normalise
        self.blocks = equal_blocks(self.N, self.K)
        self.samples: list[np.ndarray] = []   # per measured iteration: s per partition
        self.step_s: list[float] = []

    # ---- checkpoints: the threshold and the samples it is tuned from ---------------------
    def state_dict(self):
        out = super().state_dict()
        out["threshold"] = float(self.threshold)
        out["samples"] = (np.array(self.samples) if self.samples
                          else np.zeros((0, self.N)))
        out["step_s"] = np.array(self.step_s, np.float64)
        return out

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "threshold" in state:
            self.threshold = float(np.asarray(state["threshold"]))
        if "samples" in state:
            self.samples = [np.array(r, np.float64) for r in np.asarray(state["samples"])]
        if "step_s" in state:
            self.step_s = [float(x) for x in np.asarray(state["step_s"])]

    # ---- one iteration ------------------------------------------------------------------
    def plan(self):
        limit = self.threshold if math.isfinite(self.threshold) else math.inf
        tasks = [self.new_task(i, 1, blk) for i, blk in enumerate(self.blocks)]
        for t in tasks:
            t.time_limit = limit
        return tasks

    def decodable_with(self, task_ids):
        return all(tid in task_ids for tid in self.tasks)

    def done(self):
        return len(self._arrived) == len(self.tasks)

    def decode(self):
        got = self.arrived()
        computed = sum(len(t.computed) for t in got)
        if not computed:
            return Decoding({}, 0.0)
        scale = self.K / computed if self.normalise == "computed" else 1.0
        for t in got:
            t.used = True
        return Decoding({t.task_id: scale for t in got}, computed / self.K)

    def end(self, t):
        out = super().end(t)
        done = [x for x in self.tasks.values() if x.state == "done"]
        computed = sum(len(x.computed) for x in done)
        out["load"] = computed / self.K    # only what was computed is work
        out["dropped"] = self.K - computed
        out["threshold_s"] = self.threshold
        if not self.fixed and not math.isfinite(self.threshold):
            per = np.full(self.N, np.nan)
            for x in done:
                if len(x.computed):
                    per[x.worker] = x.duration / len(x.computed)
            self.samples.append(per)
            self.step_s.append(float(t))
            if len(self.samples) >= self.tune_iterations:
                self.threshold = best_threshold(np.array(self.samples),
                                                np.array(self.step_s), self.K // self.N)
                self.log_notes.append(f"dropcompute: threshold tuned to {self.threshold:.6g} s "
                                      f"from {len(self.samples)} iterations")
        return out
