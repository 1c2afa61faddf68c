"""Is a run file sound enough to be continued? Every object header is opened and every
attribute read (nothing is written, no data chunk is read, so it is cheap), so that a file
with corrupt internals is one line and exit code 2 before ``--resume`` touches it::

    mpicode simulate --resume runs/run.h5     # mpicode: error: --resume ...: corrupt ...
"""

from __future__ import annotations

import h5py

from mpicode.errors import UsageError


def _reason(e: Exception) -> str:
    text = (str(e).splitlines() or [""])[0]
    return text.split("(")[-1].rstrip(")") if "(" in text else (text or e.__class__.__name__)


def check_objects(path: str, where: str) -> None:
    """UsageError (one line) unless every group, dataset and attribute of ``path`` opens."""
    def visit(name, obj):
        for k in obj.attrs:
            obj.attrs[k]
        if isinstance(obj, h5py.Dataset):
            obj.shape, obj.dtype, obj.maxshape  # noqa: B018 - opening is the check

    check_unlocked(path, where)
    try:
        with h5py.File(path, "r", locking=False) as f:
            for k in f.attrs:
                f.attrs[k]
            f.visititems(visit)
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, RuntimeError, KeyError ...
        raise UsageError(f"{where}: not a readable mpicode run (corrupt file: "
                         f"{_reason(e)})") from None


def check_unlocked(path: str, where: str) -> None:
    """UsageError if another process holds ``path`` open for writing (HDF5's file lock):
    a run still being written must not be continued by a second one."""
    try:
        h5py.File(path, "r", locking=True).close()
    except BlockingIOError:
        raise UsageError(f"{where}: the file is locked by another process (a run still "
                         "writing it?)") from None
    except Exception:  # noqa: BLE001 - no lock support here, or corrupt: checked next
        pass
