"""Rank 0 says which worker died, before the launcher ends the job.

When a worker is killed (SIGKILL, the OOM killer), MPICH's launcher kills every other rank
at once, rank 0 included: the job ended with the launcher's banner and no line of ours. Rank 0
learns each worker's pid and host at start-up (:mod:`mpicode.mpi.startup`) and starts this
small helper process for the workers on its own host. The helper holds a ``pidfd`` of each
(Linux 5.3+) and waits on them with ``poll``: it has its own interpreter, so it answers within
microseconds of a death, long before the launcher's kill comes round, and writes one line
to rank 0's stderr naming the worker, its rank and pid, and where the run can be continued.
It leaves at once when rank 0 disarms it (before STOP: workers then exit on purpose) or
dies (its stdin closes without the disarm byte: then it says that rank 0 was killed, as a
second Ctrl-C makes MPICH's mpiexec do), so it never holds the launcher's output pipe open.
It runs in a session of its own, so that the launcher's kill of rank 0's process group
cannot stop it halfway. Workers on other
hosts are not seen (their death still ends the job; the run file stays resumable).

Run by rank 0 as a file (``python .../deathwatch.py OUT RANK:PID ...``), never imported
through ``mpicode.mpi`` (which initialises MPI); no MPI here.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys


class DeathWatch:
    """Rank 0's handle: ``DeathWatch({rank: pid}, out).start()``, then ``disarm()``."""

    def __init__(self, pids: dict[int, int], out: str):
        self.pids, self.out, self.p = dict(pids), out, None

    def start(self) -> DeathWatch:
        if hasattr(os, "pidfd_open"):
            try:
                self.p = subprocess.Popen(
                    [sys.executable, "-S", "-I", os.path.abspath(__file__), self.out,
                     *(f"{r}:{pid}" for r, pid in sorted(self.pids.items()))],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True,
                    start_new_session=True)  # the launcher's kill of rank 0 spares it
            except OSError:
                self.p = None
        return self

    def disarm(self) -> None:
        """Workers are about to exit on purpose (STOP): the helper leaves, saying nothing."""
        if self.p is not None:
            try:
                self.p.stdin.write(b"d")  # disarmed: unlike a bare EOF (rank 0 killed)
                self.p.stdin.close()
                self.p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
            self.p = None


def line(dead: list[int], pids: dict[int, int], out: str) -> str:
    who = ", ".join(f"worker {r - 1} (rank {r}, pid {pids[r]})" for r in dead)
    return (f"mpicode: error: {who} died during the run (killed, or exited without a word); "
            f"the launcher ends the job; the rows and the last checkpoint stay in {out}.part "
            f"(continue with --resume {out})\n")


def rank0_line(out: str) -> str:
    return (f"mpicode: error: rank 0 was killed before it could finish (MPICH's mpiexec forces "
            f"an abort on a second Ctrl-C: press it once and wait for the checkpoint); the "
            f"rows written and the last checkpoint stay in {out}.part (continue with "
            f"--resume {out})\n")


def watch(out: str, pids: dict[int, int]) -> None:
    """The helper: poll the workers' pidfds and stdin; one line on the first death of a
    worker, or of rank 0 itself (stdin closed without the disarm byte)."""
    fds = {}
    for rank, pid in pids.items():
        try:
            fds[os.pidfd_open(pid)] = rank
        except OSError:
            pass
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN)
    p.register(0, select.POLLIN | select.POLLHUP)
    events = p.poll()
    # a death first: the launcher may be killing rank 0 (closing our stdin) at this moment
    dead = sorted(fds[fd] for fd, _ in events if fd in fds)
    text = line(dead, pids, out) if dead else ""
    if not dead and os.read(0, 1) != b"d":
        text = rank0_line(out)  # rank 0 died without disarming: the launcher killed it
    if text:
        try:
            os.write(2, text.encode())
        except OSError:
            pass


if __name__ == "__main__":
    watch(sys.argv[1], {int(a.split(":")[0]): int(a.split(":")[1]) for a in sys.argv[2:]})
    os.close(2)  # the launcher's pipe: never held open
