"""Marks a run ``failed`` when its writer dies without closing it.

``python -m mpicode.io.watchdog PID PATH.part`` is started by rank 0 in a session of its own.
When a rank dies, MPICH's launcher kills every other rank with SIGKILL, so rank 0 cannot
write anything; this process outlives it, and if ``PATH.part`` still says ``running`` it
sets ``status = "failed"`` and a ``failure`` attribute. Rows below ``n_done`` are untouched;
a run with a checkpoint can be continued with ``--resume``. It exits as soon as the writer
closes the file (renames the .part) or is gone.
"""

from __future__ import annotations

import os
import sys
import time


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def watch(pid: int, path: str, period: float = 0.2) -> None:
    while alive(pid):
        if not os.path.exists(path):
            return
        time.sleep(period)
    if not os.path.exists(path):
        return
    time.sleep(period)  # let the kernel release the writer's file lock
    import h5py
    try:
        with h5py.File(path, "r+", locking=False) as f:
            if f.attrs.get("status") == "running":
                f.attrs["status"] = "failed"
                f.attrs["failure"] = (f"the writer (pid {pid}) died without closing the run; "
                                      "rows below n_done are valid")
    except OSError:
        pass


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
