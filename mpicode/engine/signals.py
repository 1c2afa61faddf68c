"""Stopping cleanly: the stop flag the signal handlers set, and one line for a failed write."""

from __future__ import annotations

import sys

from mpicode.io.safefile import DiskFull


class Interrupted(Exception):
    """A stop was requested (SIGTERM or SIGUSR1) while an iteration was running."""


class Stalled(Exception):
    """An iteration waited past ``--max-wait`` for workers that never answered (the message
    names them); the run fails with a checkpoint of the last complete iteration."""


def stalled(scheme, it: int, limit: float) -> Stalled:
    """The error of an iteration that waited more than ``--max-wait`` seconds."""
    silent = sorted({t.worker for t in scheme.pending()})
    who = ", ".join(f"worker {w} (rank {w + 1})" for w in silent) or "no worker"
    return Stalled(f"iteration {it} waited more than --max-wait {limit:g} s: no result from "
                   f"{who}")


STOP: dict = {"signal": None}  # set by the signal handlers that train/simulate install


def stop_requested() -> bool:
    return STOP["signal"] is not None


def write_error(e: Exception) -> str:
    """One line for a failed write of the run log (HDF5 reports a full disk as OSError or
    RuntimeError). Once a write failed, the HDF5 library complains again when each of its
    objects is freed; those messages are silenced (sys.unraisablehook): the run ends now."""
    if isinstance(e, DiskFull):
        return f"stopped before the disk is full: {e}"
    sys.unraisablehook = lambda unraisable: None
    text = str(e).splitlines()[0]
    cause = next((w for w in ("File too large", "No space left on device", "Disk quota")
                  if w in str(e)), text)
    return f"cannot write the run log ({cause})"


def install_stop_handlers() -> None:
    """SIGTERM, SIGINT (Ctrl-C) and SIGUSR1 (SLURM's warning before a time limit; MPICH's
    launcher forwards them to every rank) ask for a clean stop: rank 0 ends the iteration,
    writes a final checkpoint, marks the run "interrupted" and stops the workers; workers
    keep serving until then. Installed first thing, so that a signal during start-up is
    remembered too (the run then ends before it writes anything). SIGXFSZ is ignored so that
    a file-size limit is a write error, not a kill."""
    import signal

    def handler(signum, frame):
        STOP["signal"] = signum

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(s, handler)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
