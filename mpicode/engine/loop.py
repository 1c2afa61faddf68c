"""The run loop shared by the MPI coordinator and the simulator: iterations with
evaluation, logging, progress, checkpoints and clean interruption (no MPI)."""

from __future__ import annotations

import math

import numpy as np


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
        from mpicode.io import checkpoint
        return checkpoint.snapshot(
            w=self.w, iteration=next_iteration,
            n_tasks=self.runlog.n_tasks if self.runlog is not None else 0, vt=self.vt,
            t_offset=self.elapsed(), scheme=self.scheme, uplink=self.uplink,
            runtime=self.runtime_state())

    def restore(self, snap: dict) -> int:
        """Continue from a checkpoint; returns the iteration to start at."""
        from mpicode.io import checkpoint
        self.w = np.array(snap["w"], dtype=float)
        self.vt = float(snap["vt"])
        self.t_offset = float(snap["t_offset"])
        checkpoint.restore(snap, scheme=self.scheme, uplink=self.uplink)
        self.set_runtime_state(snap.get("runtime", {}))
        return int(snap["iteration"])

    def run(self, iterations: int, start: int = 0) -> np.ndarray:
        from mpicode.engine import faults
        from mpicode.io.runlog import DiskFull
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
                    self.runlog.add_notes(it, out.get("notes", ()))
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

    from mpicode.io.runlog import DiskFull
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
