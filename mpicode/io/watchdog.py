"""Marks a run ``failed`` when its writer dies without closing it.

``python -m mpicode.io.watchdog PID PATH.part`` is started by rank 0 in a session of its own.
When a rank dies, MPICH's launcher kills every other rank with SIGKILL, so rank 0 cannot
write anything; this process outlives it, and if ``PATH.part`` still says ``running`` it
sets ``status = "failed"`` and a ``failure`` attribute. Rows below ``n_done`` are untouched;
a run with a checkpoint can be continued with ``--resume``. It exits as soon as the writer
closes the file (renames the .part) or is gone. It touches only the file it was started on
(same inode) and only while no live run holds that file's lock (a run that took the name
over, with ``--force`` or ``--resume``, is left alone).
"""

from __future__ import annotations

import os
import sys
import time

from mpicode.io import safefile


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


def _inode(path: str):
    try:
        st = os.lstat(path)
        return st.st_dev, st.st_ino
    except OSError:
        return None


def watch(pid: int, path: str, period: float = 0.2) -> None:
    ino = _inode(path)
    while alive(pid):
        if _inode(path) != ino:
            return
        time.sleep(period)
    if ino is None or _inode(path) != ino:
        return
    fd = None
    for _ in range(25):  # the kernel releases a killed writer's lock when its files close
        try:
            fd = safefile.hold(path)
            break
        except safefile.InUse:
            time.sleep(period)
        except OSError:
            return
    if fd is None or _inode(path) != ino:
        safefile.release(fd)
        return
    import h5py
    try:
        with h5py.File(path, "r+", locking=False) as f:
            if f.attrs.get("status") == "running":
                f.attrs["status"] = "failed"
                f.attrs["failure"] = (f"the writer (pid {pid}) died without closing the run; "
                                      "rows below n_done are valid")
    except OSError:
        pass
    finally:
        safefile.release(fd)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
