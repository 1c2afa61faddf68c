"""Stopping cleanly: the stop flag the signal handlers set, and one line for a failed write."""

from __future__ import annotations


class Interrupted(Exception):
    """A stop was requested (SIGTERM or SIGUSR1) while an iteration was running."""


STOP: dict = {"signal": None}  # set by the signal handlers that train/simulate install


def stop_requested() -> bool:
    return STOP["signal"] is not None


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
