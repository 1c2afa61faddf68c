"""Creating and holding a run file safely (pure file-system work; no MPI).

* A run file is never opened through a symbolic link (``O_NOFOLLOW``) and never truncated:
  a new one is built under a temporary name in the same directory, created exclusively
  (h5py mode ``"x"``: ``O_CREAT | O_EXCL``), and only then linked to its name (``link(2)``
  fails if the name exists, so nothing is replaced unless ``--force`` asked for it).
* The writer holds an exclusive ``flock`` on the file for as long as it writes it (HDF5's own
  lock is off: ``locking=False``, so that the watchdog and readers of a live run can open it).
  :func:`is_held` tells another process that a live run owns the file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets


class InUse(OSError):
    """Another live process holds the file."""


def _open_nofollow(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)


def is_held(path: str) -> bool:
    """True if a live process holds ``path`` locked (a run writing it). A missing file or a
    symbolic link is not held."""
    try:
        fd = _open_nofollow(path)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without flock: nobody can hold it either
        return False
    finally:
        os.close(fd)
    return False


def hold(path: str) -> int:
    """Open ``path`` (never through a symlink) and lock it exclusively; returns the fd to keep
    open. Raises :class:`InUse` if another process holds it."""
    fd = _open_nofollow(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InUse(errno.EWOULDBLOCK, "in use by another run", path) from None
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EINVAL, errno.ENOTSUP):
            os.close(fd)
            raise
    return fd


def release(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)  # closing the descriptor drops the lock
        except OSError:
            pass


def temp_name(path: str) -> str:
    """A fresh name next to ``path`` (same directory: the final link/rename stays atomic)."""
    d, base = os.path.split(path)
    return os.path.join(d, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def link_into_place(tmp: str, path: str, replace: bool) -> None:
    """Give the file ``tmp`` the name ``path`` and drop ``tmp``. Without ``replace`` an existing
    ``path`` is never replaced (FileExistsError). ``path`` as a symlink is replaced as a name
    (``rename(2)`` does not follow it); a live run's file is never replaced (InUse)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        if not replace:
            raise
        if is_held(path):
            raise InUse(errno.EWOULDBLOCK, "in use by another run", path) from None
        os.replace(tmp, path)
        return
    except OSError as e:  # a file system without hard links
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EXDEV):
            raise
        if os.path.lexists(path) and not replace:
            raise FileExistsError(errno.EEXIST, "exists", path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def rename_noreplace(src: str, dst: str) -> None:
    """``src`` becomes ``dst``; FileExistsError if ``dst`` exists."""
    link_into_place(src, dst, replace=False)


class DiskFull(OSError):
    """Not enough room left for the next rows: the run stops before writing them."""


MIN_ROOM = 1 << 20  # bytes a run needs before it starts, and the slack it keeps


def room_for(path: str) -> int:
    """Bytes that can still be written to ``path``: free space on its file system, and
    the process's file-size limit (RLIMIT_FSIZE) minus the file's size."""
    import resource
    import shutil
    d = os.path.dirname(path) or "."
    free = shutil.disk_usage(d).free
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        free = min(free, soft - (os.path.getsize(path) if os.path.exists(path) else 0))
    return int(free)
