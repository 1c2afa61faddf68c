"""Per-iteration bookkeeping shared by the MPI coordinator and the simulator (pure).

Both drivers fill an :class:`IterationInfo` while they run an iteration, then call
:func:`combine` to form the decoded gradient and :func:`collect_rows` to build the rows of the
run log, so an MPI run and a simulated run log exactly the same fields the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class IterationInfo:
    n_workers: int
    task_index: np.ndarray = None          # tasks dispatched so far, per worker
    delay: dict = field(default_factory=dict)      # tid -> injected delay drawn (s)
    measured: dict = field(default_factory=dict)   # tid -> (compute_s, delay_s) reported
    msgs: dict = field(default_factory=dict)       # tid -> (gradient sum, loss sum)
    ready: dict = field(default_factory=dict)      # tid -> time its message was ready to go
    stale: int = 0
    cancelled: int = 0
    msg_bytes: int = 0

    def __post_init__(self):
        if self.task_index is None:
            self.task_index = np.zeros(self.n_workers, np.int64)

    def next_index(self, worker: int) -> int:
        k = int(self.task_index[worker])
        self.task_index[worker] += 1
        return k


def combine(dec, msgs: dict, dim: int) -> tuple[np.ndarray, float]:
    """Decoded gradient sum and loss sum: sum over chosen tasks of weight * message."""
    gsum = np.zeros(dim)
    lsum = 0.0
    for tid, wgt in dec.weights.items():
        g, loss = msgs[tid]
        gsum += wgt * g
        lsum += wgt * loss
    return gsum, lsum


TASK_KEYS = ("iteration", "worker", "stage", "n_partitions", "first_partition", "t_dispatch",
             "t_done", "used", "cancelled", "compute_s", "delay_s", "t_ready")


def collect_rows(scheme, it: int, info: IterationInfo, *, t_start: float, t_end: float,
                 t_wait: float, decode_s: float, dec, summary: dict, grad_norm: float) -> dict:
    """The iteration's rows for the run log: ``row``, ``workers`` (N-vectors), ``tasks``."""
    N = info.n_workers
    # communication time: from the moment every used message was ready to decodability
    ready = [info.ready[t.task_id] for t in scheme.tasks.values()
             if t.used and t.task_id in info.ready]
    comm_s = t_wait - max(ready) if ready else math.nan
    row = {"comm_s": comm_s, "iteration": it, "t_start": t_start, "t_end": t_end, "wait_s": t_wait,
           "decode_s": decode_s, "coverage": dec.coverage, "load": summary["load"],
           "stage2": summary.get("stage2", 0), "n_stage2": summary.get("n_stage2", 0),
           "n_cancelled": info.cancelled, "n_stale": info.stale,
           "bytes_up": info.msg_bytes * len(info.msgs) if info.msgs else
           info.msg_bytes * sum(t.state == "done" for t in scheme.tasks.values()),
           "grad_norm": grad_norm}
    # one pass over the tasks into columns, then per-worker sums with numpy (10^4 tasks an
    # iteration in the simulator: no per-task dict work)
    nan2 = (math.nan, math.nan)
    cols = list(zip(*[
        (t.worker, t.stage, t.n, int(t.partitions[0]) if t.n else -1, t.t_dispatch, t.t_done,
         int(t.used), t.state == "cancelled", t.state == "done",
         *info.measured.get(t.task_id, nan2), info.delay.get(t.task_id, 0.0),
         info.ready.get(t.task_id, math.nan))
        for t in scheme.tasks.values()], strict=True)) or [()] * 13
    (w, stage, n, first, t_disp, t_done, used, canc, done, comp, dl, delay, rdy) = (
        np.asarray(c) for c in cols)
    w = w.astype(np.int64)
    done = done.astype(bool)
    workers = {"stage": np.zeros(N, np.int8), "partitions": np.zeros(N, np.int32),
               "compute_s": np.zeros(N), "delay_s": np.zeros(N),
               "finish_s": np.full(N, np.nan), "used": np.zeros(N, np.int8),
               "active": np.asarray(scheme.active, np.int8)}
    if len(w):
        first_task = np.unique(w, return_index=True)  # stage of each worker's first task
        workers["stage"][first_task[0]] = np.asarray(stage)[first_task[1]]
        np.add.at(workers["partitions"], w, n.astype(np.int32))
        np.add.at(workers["compute_s"], w[done], comp[done])
        np.add.at(workers["delay_s"], w[done], dl[done])
        np.fmax.at(workers["finish_s"], w[done], t_done[done])
        np.maximum.at(workers["used"], w, used.astype(np.int8))
    tasks = {"iteration": np.full(len(w), it, np.int64), "worker": w, "stage": stage,
             "n_partitions": n, "first_partition": first, "t_dispatch": t_disp,
             "t_done": t_done, "used": used, "cancelled": canc.astype(np.int8),
             "compute_s": comp, "delay_s": delay, "t_ready": rdy}
    return {"row": row, "workers": workers, "tasks": tasks}


# ----------------------------------------------------------------------------------------
# the run loop shared by the MPI coordinator and the simulator
# ----------------------------------------------------------------------------------------
class Interrupted(Exception):
    """A stop was requested (SIGTERM or SIGUSR1) while an iteration was running."""


STOP: dict = {"signal": None}  # set by the signal handlers that train/simulate install


def stop_requested() -> bool:
    return STOP["signal"] is not None


class IterationLoop:
    """``run()``: iterations with evaluation, logging, progress, checkpoints, and clean
    interruption. The driver provides ``iteration(it)`` and the attributes ``w``, ``scheme``,
    ``uplink``, ``problem`` (None: no model), ``runlog``, ``progress``, ``eval_every``,
    ``checkpoint_every``, ``history``, ``vt`` and ``elapsed()``."""

    status = "complete"
    error: str | None = None
    snap: dict | None = None
    log_broken = False  # a write to the run log failed half-way: write nothing more

    def runtime_state(self) -> dict:
        return {}

    def set_runtime_state(self, state: dict) -> None:
        pass

    def after_iteration(self, it: int, out: dict) -> None:
        pass

    def take_snapshot(self, next_iteration: int) -> dict:
        from mpicode import checkpoint
        return checkpoint.snapshot(
            w=self.w, iteration=next_iteration,
            n_tasks=self.runlog.n_tasks if self.runlog is not None else 0, vt=self.vt,
            t_offset=self.elapsed(), scheme=self.scheme, uplink=self.uplink,
            runtime=self.runtime_state())

    def restore(self, snap: dict) -> int:
        """Continue from a checkpoint; returns the iteration to start at."""
        from mpicode import checkpoint
        self.w = np.array(snap["w"], dtype=float)
        self.vt = float(snap["vt"])
        self.t_offset = float(snap["t_offset"])
        checkpoint.restore(snap, scheme=self.scheme, uplink=self.uplink)
        self.set_runtime_state(snap.get("runtime", {}))
        return int(snap["iteration"])

    def run(self, iterations: int, start: int = 0) -> np.ndarray:
        from mpicode import faults
        from mpicode.h5log import DiskFull
        self.snap = self.take_snapshot(start)
        for it in range(start, start + iterations):
            faults.kill_at(it)
            if stop_requested():
                self.status = "interrupted"
                break
            try:
                out = self.iteration(it)
            except Interrupted:
                self.status = "interrupted"
                break
            row = out["row"]
            if self.problem is not None and ((it + 1) % self.eval_every == 0
                                             or it == start + iterations - 1):
                row.update(self.problem.evaluate(self.w))
            self.after_iteration(it, out)
            self.history.append(row)
            if self.runlog is not None:
                try:
                    self.runlog.append(row, out["workers"], out["tasks"])
                except (OSError, RuntimeError) as e:  # disk full, quota: stop cleanly
                    self.status, self.error = "failed", write_error(e)
                    self.log_broken = not isinstance(e, DiskFull)
                    break
            if self.progress is not None:
                self.progress.update(1)
                self.progress.set_postfix(loss=f"{row.get('loss', math.nan):.4g}",
                                          cov=f"{row['coverage']:.2f}",
                                          it_s=f"{row['t_end'] - row['t_start']:.3f}",
                                          refresh=False)
            self.snap = self.take_snapshot(it + 1)
            if (self.runlog is not None and self.checkpoint_every
                    and (it + 1) % self.checkpoint_every == 0):
                self.write_checkpoint()
        if not self.log_broken:  # after a clean stop (even a full disk) a checkpoint may fit
            self.write_checkpoint()
        return self.w

    def write_checkpoint(self) -> None:
        if self.runlog is None or self.snap is None:
            return
        try:
            self.runlog.checkpoint(self.snap)
        except (OSError, RuntimeError) as e:
            self.status = "failed"
            self.error = self.error or write_error(e)


def write_error(e: Exception) -> str:
    """One line for a failed write of the run log (HDF5 reports a full disk as OSError or
    RuntimeError). Once a write failed, the HDF5 library complains again when each of its
    objects is freed; those messages are silenced (sys.unraisablehook): the run ends now."""
    import sys

    from mpicode.h5log import DiskFull
    if isinstance(e, DiskFull):
        return f"stopped before the disk is full: {e}"
    sys.unraisablehook = lambda unraisable: None
    text = str(e).splitlines()[0]
    cause = next((w for w in ("File too large", "No space left on device", "Disk quota")
                  if w in str(e)), text)
    return f"cannot write the run log ({cause})"


def install_stop_handlers() -> None:
    """SIGTERM and SIGUSR1 (SLURM's warning before a time limit; MPICH's launcher forwards
    both to every rank) ask for a clean stop: rank 0 ends the iteration, writes a final
    checkpoint, marks the run "interrupted" and stops the workers; workers keep serving until
    then. SIGXFSZ is ignored so that a file-size limit is a write error, not a kill."""
    import signal

    def handler(signum, frame):
        STOP["signal"] = signum

    for s in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(s, handler)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
