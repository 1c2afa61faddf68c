"""Memory: how much the kernel can give without swapping, and the one-line refusal of what
would not fit (pure, but for :func:`mem_available`). A leaf of the import graph: the readers
of data files (:mod:`mpicode.io`) check their arrays with it before allocating, and
:mod:`mpicode.engine.budget` a whole run::

    mpicode data synth --samples 100000000000 --out x.h5   # mpicode: error: ... would need ...
"""

from __future__ import annotations

from mpicode.errors import UsageError

DATA_COPIES = 3        # float64 data as read + per-partition copies + a cast or temporaries


def gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 28 else f"{n / (1 << 20):.0f} MiB"


def mem_available(meminfo: str = "/proc/meminfo") -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), or None."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def data_bytes(rows: int, cols: int, n_test: int = 0, copies: int = DATA_COPIES) -> int:
    """Bytes of a dataset of ``rows`` (+ ``n_test``) x ``cols`` float64, ``copies`` times."""
    return 8 * (int(rows) + int(n_test)) * int(cols) * int(copies)


def check(need: int, what: str, available: int | None = None) -> None:
    """UsageError (one line) if ``need`` bytes do not fit in what is available."""
    avail = mem_available() if available is None else available
    if avail is not None and need > avail:
        raise UsageError(f"{what} would need about {gib(need)} of memory, more than the "
                         f"{gib(avail)} available (MemAvailable in /proc/meminfo)")
