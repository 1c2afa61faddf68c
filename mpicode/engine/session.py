"""One run's lifecycle, the same for ``train`` (rank 0), ``simulate`` and the experiment cells:
open the run log (new or resumed) with the run's attributes and the progress display, hand
the trainer their hooks (:meth:`Session.hooks`: the trainer is built with them), run it,
write the final groups, close the log with the run's status, and turn the outcome into one
line and an exit code (0 complete, 1 failed, 3 interrupted)::

    session = Session(cfg, mode="simulated", n_workers=N, attrs={...}, snap=None)
    session.open()
    trainer = Trainer(..., hooks=[..., *session.hooks()])   # (engine/assembly.py)
    code = session.run(trainer, after_loop=...)
"""

from __future__ import annotations

import sys
import time
import traceback

from mpicode.engine.hooks import Checkpoints, Every, RunLogWriter, ShowProgress
from mpicode.engine.progress import make_progress
from mpicode.engine.signals import STOP, write_error
from mpicode.io.runlog import RunLog

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 3


def run_attrs(cfg, n_workers: int) -> dict:
    """The attributes every run carries (drivers add their own)."""
    return {"scheme": cfg.scheme, "scheduler": "none" if cfg.channel == "ideal"
            else cfg.scheduler, "channel": cfg.channel, "stragglers": cfg.stragglers,
            "N": n_workers, "K": cfg.partitions, "seed": cfg.seed, "model": cfg.model}


class Session:
    """``Session(cfg, mode=..., n_workers=N, attrs={...}, snap=checkpoint or None)``;
    ``open()``; the trainer built with ``hooks()``; then ``code = session.run(trainer,
    after_loop=...)``."""

    def __init__(self, cfg, *, mode: str, n_workers: int, attrs: dict, snap=None,
                 desc: str = ""):
        self.cfg, self.mode, self.N, self.snap = cfg, mode, n_workers, snap
        self.attrs = {**run_attrs(cfg, n_workers), **attrs}
        self.desc = desc or f"{cfg.scheme} N={n_workers}"
        self.runlog = None
        self.progress = None
        self.trainer = None
        self.status = "failed"
        self.shutdown: str | None = None  # what went wrong stopping the workers, if anything

    @property
    def start(self) -> int:
        """The first iteration to run: the checkpoint's, or 0."""
        return int(self.snap["iteration"]) if self.snap is not None else 0

    def open(self):
        """Create (or reopen, resuming) the run log and the progress display."""
        cfg, snap = self.cfg, self.snap
        if snap is not None:
            self.runlog = RunLog.resume(cfg.resume, int(snap["iteration"]), int(snap["n_tasks"]),
                                        config_json=cfg.to_json(), flush_every=cfg.flush_every)
        else:
            self.runlog = RunLog(cfg.out, config_json=cfg.to_json(), n_workers=self.N,
                                 n_partitions=cfg.partitions, mode=self.mode, attrs=self.attrs,
                                 force=cfg.force, flush_every=cfg.flush_every)
        self.runlog.start_watchdog()
        self.progress = make_progress("none" if cfg.quiet else cfg.progress, cfg.iterations,
                                      self.desc, initial=self.start)
        return self.runlog

    def hooks(self) -> list:
        """The session's hooks on the run loop, in order: the run log's rows, the progress
        display, the checkpoints (``--checkpoint-every``, and at the end)."""
        if self.runlog is None:
            raise RuntimeError("Session.open() first: its hooks write to the run log")
        return [RunLogWriter(self.runlog), ShowProgress(self.progress),
                Checkpoints(self.runlog, Every(self.cfg.checkpoint_every))]

    def run(self, trainer, after_loop=None) -> int:
        """Run ``trainer`` (built with :meth:`hooks`) to ``cfg.iterations`` (from the
        checkpoint, if any), then ``after_loop()`` (MPI: stop the workers), the final writes
        and the close."""
        cfg, runlog, progress = self.cfg, self.runlog, self.progress
        if runlog is None:
            raise RuntimeError("Session.open() first, and build the trainer with its hooks")
        self.trainer = trainer
        t0 = time.perf_counter()
        try:
            start = trainer.restore(self.snap) if self.snap is not None else 0
            if self.snap is not None and not cfg.quiet:
                print(f"mpicode: resuming {cfg.resume} at iteration {start} of "
                      f"{cfg.iterations} ({runlog.n_done} rows kept)", file=sys.stderr,
                      flush=True)
            t0 = time.perf_counter()
            trainer.run(max(0, cfg.iterations - start), start=start)
            if after_loop is not None:  # MPI: stop the workers; a note if some never answered
                self.shutdown = after_loop()
            self._final_writes(trainer, runlog, time.perf_counter() - t0)
        finally:
            progress.close()
            runlog.close(self.status)
        return self.outcome()

    def _final_writes(self, trainer, runlog, wall_s: float) -> None:
        try:
            if trainer.status != "failed" and trainer.problem is not None:
                runlog.write_group("model", {"w": trainer.w})
            if trainer.uplink is not None and self.cfg.log_slots:
                runlog.write_group("slots", trainer.uplink.sched.slot_log(), compress=True)
            runlog.set_attrs(wall_s=wall_s)
            self.status = trainer.status
        except (OSError, RuntimeError) as e:  # the final writes hit a full disk
            trainer.error = write_error(e)

    def outcome(self) -> int:
        """Print the one line of a failed or interrupted run (or of a shutdown that failed:
        the run itself is then complete in the file); return the exit code."""
        t, out, n = self.trainer, self.cfg.out, self.runlog.n_done
        stuck = f"; {self.shutdown}" if self.shutdown else ""
        if t.exc is not None and getattr(self.cfg, "verbose", False):
            traceback.print_exception(t.exc, file=sys.stderr)  # a plugin's, with --verbose
        if t.error:
            line = f"mpicode: error: {t.error}; {out}: {self.runlog.kept()}"
            code = EXIT_FAILED
        elif self.status == "interrupted":
            sig = f" (signal {STOP['signal']})" if STOP["signal"] is not None else ""
            line = (f"mpicode: interrupted{sig}: {n} iterations and a checkpoint in {out}; "
                    f"continue with --resume {out}")
            code = EXIT_INTERRUPTED
        elif self.shutdown:
            line = (f"mpicode: error: {self.shutdown}; the run itself is complete in {out} "
                    f"({n} iterations)")
            return self._say(line, EXIT_FAILED)
        else:
            return EXIT_OK
        return self._say(line + stuck, code)

    @staticmethod
    def _say(line: str, code: int) -> int:
        print(line, file=sys.stderr, flush=True)
        return code

