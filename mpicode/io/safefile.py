"""Creating every file mpicode writes safely, and holding a run file (pure file-system work;
no MPI).

* :func:`writing` / :func:`write_text` / :func:`write_bytes` are the one path for every other
  file (datasets, traces, profiles, plots, sweep logs, experiment results): the content goes
  to a fresh temporary name in the same directory, created with ``O_CREAT | O_EXCL |
  O_NOFOLLOW`` (never an existing file, never through a symlink) and locked, and is moved to
  its name only once complete (flushed and fsync'ed). A write that fails (a full disk)
  removes the temporary file and leaves the name as it was. Replacing (``--force``, or a
  plot regenerated) renames over the name: a symlink there is replaced as a link, its target
  never written; a file a live run holds is never replaced.

* A run file is never opened through a symbolic link (``O_NOFOLLOW``) and never truncated:
  a new one is built under a temporary name in the same directory, created exclusively
  (h5py mode ``"x"``: ``O_CREAT | O_EXCL``), and only then linked to its name (``link(2)``
  fails if the name exists, so nothing is replaced unless ``--force`` asked for it).
* The writer holds an exclusive ``flock`` on the file for as long as it writes it (HDF5's own
  lock is off: ``locking=False``, so that the watchdog and readers of a live run can open it).
  :func:`is_held` tells another process that a live run owns the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
from collections.abc import Iterator

from mpicode.errors import UsageError, WriteError


class InUse(OSError):
    """Another live process holds the file."""


class DiskFull(OSError):
    """Not enough room left for the next rows: the run stops before writing them."""


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


def name_max(directory: str) -> int:
    """The longest file name ``directory``'s file system takes (NAME_MAX, usually 255)."""
    try:
        return int(os.pathconf(directory or ".", "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def temp_name(path: str) -> str:
    """A fresh name next to ``path`` (same directory: the final link/rename stays atomic),
    within NAME_MAX however long ``path``'s own name is (a legal 250-character name gets a
    shortened prefix, never a name the file system refuses)."""
    d, base = os.path.split(path)
    suffix = f".{os.getpid()}.{secrets.token_hex(4)}.tmp"
    room = name_max(d) - len(suffix) - 1
    return os.path.join(d, f".{base[:room]}{suffix}")


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


def _replace_ok(path: str) -> None:
    """``path`` may be replaced by a rename: not a directory, not a live run's file."""
    if os.path.isdir(path) and not os.path.islink(path):
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    if is_held(path):
        raise InUse(errno.EWOULDBLOCK, "in use by another run", path)


def _why(e: OSError) -> str:
    return os.strerror(e.errno) if e.errno else " ".join(str(e).split())


@contextlib.contextmanager
def writing(path, *, replace: bool = True) -> Iterator:
    """``with writing(path) as f: f.write(...)``: ``f`` is a new file under a temporary name
    next to ``path`` (created exclusively, never through a symlink, locked); when the block
    ends without error it is flushed, fsync'ed and given the name ``path``. Without
    ``replace`` an existing ``path`` is FileExistsError (nothing written); with it, ``path``
    is replaced as a name (a symlink is replaced, not followed). On any error the temporary
    file is removed and ``path`` is as it was; a write that fails (full disk, quota) is
    :class:`~mpicode.errors.WriteError` naming ``path``."""
    path = os.fspath(path)
    if not replace and os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "exists", path)
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o666)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {_why(e)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # a fresh unique name: a file system without flock loses nothing here
    f = os.fdopen(fd, "wb")
    try:
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        _into_place(tmp, path, replace)
    except BaseException as e:
        _failed(tmp, path, e)
        raise


def _into_place(tmp: str, path: str, replace: bool) -> None:
    """The complete ``tmp`` becomes ``path`` (an existing one replaced only if it may be)."""
    if replace and os.path.lexists(path):
        _replace_ok(path)
    link_into_place(tmp, path, replace=replace)


def _failed(tmp: str, path: str, e: BaseException) -> None:
    """Remove ``tmp``; a failed write (OSError, or HDF5's RuntimeError for one) becomes
    WriteError naming ``path``; a refusal (exists, in use, a directory) stays as it is."""
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    if isinstance(e, (FileExistsError, InUse, IsADirectoryError)):
        return
    if isinstance(e, OSError):
        raise WriteError(f"cannot write {path}: {_why(e)}") from None
    if isinstance(e, RuntimeError) and "write" in str(e).lower():
        raise WriteError(f"cannot write {path}: {' '.join(str(e).split())[:200]}") from None


@contextlib.contextmanager
def creating(path, *, replace: bool = True) -> Iterator[str]:
    """For writers that need a name, not a file (h5py): ``with creating(path) as tmp:
    h5py.File(tmp, "x")...``; the caller creates ``tmp`` exclusively (``"x"``: O_EXCL, which
    never follows a symlink) and closes it inside the block; then as :func:`writing`."""
    path = os.fspath(path)
    if not replace and os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "exists", path)
    tmp = temp_name(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _into_place(tmp, path, replace)
    except BaseException as e:
        _failed(tmp, path, e)
        raise


def write_bytes(path, data: bytes, *, replace: bool = True) -> str:
    """``data`` as the file ``path`` (see :func:`writing`); returns ``path``."""
    with writing(path, replace=replace) as f:
        f.write(data)
    return os.fspath(path)


def write_text(path, text: str, *, replace: bool = True) -> str:
    """``text`` (UTF-8) as the file ``path`` (see :func:`writing`); returns ``path``."""
    return write_bytes(path, text.encode("utf-8"), replace=replace)


@contextlib.contextmanager
def output(path, *, force: bool) -> Iterator[str]:
    """An output the user named (``--out``) that mpicode builds with h5py: ``with
    output(path, force=...) as tmp: h5py.File(tmp, "x")...``. Refusals are one line
    (UsageError): the name exists without ``force``; it is a directory; it appeared while
    this one was written (a concurrent writer: its file is kept, this one dropped); a live
    run holds it. ``force`` replaces the name (a symlink as a link, never its target)."""
    path = os.fspath(path)
    if os.path.isdir(path) and not os.path.islink(path):
        raise UsageError(f"output is a directory: {path}")
    if os.path.lexists(path) and not force:
        raise UsageError(f"output exists: {path} (use --force to overwrite)")
    d = os.path.dirname(path)
    if d:
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create output directory {d}: {_why(e)}") from None
    try:
        with creating(path, replace=force) as tmp:
            yield tmp
    except FileExistsError:
        raise UsageError(f"output {path} appeared while this one was written (another "
                         "writer?): it was kept, nothing was replaced") from None
    except InUse:
        raise UsageError(f"output {path} is in use by a running mpicode run") from None
    except IsADirectoryError:
        raise UsageError(f"output is a directory: {path}") from None


def output_text(path, text: str, *, force: bool) -> str:
    """A text output the user named: the refusals of :func:`output`, written as
    :func:`write_text`."""
    with output(path, force=force) as tmp:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
    return os.fspath(path)
