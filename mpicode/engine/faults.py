"""Fault injection for the fault tests, from the environment variable ``MPICODE_FAULT``
(never set in normal use; comma-separated items):

* ``kill:ITER``       rank 0 SIGKILLs itself at the start of iteration ITER (the whole job dies),
* ``hang:RANK:ITER``  worker RANK stops answering from iteration ITER on: it drops every task
                      but still honours STOP, so the job can end,
* ``die:RANK:ITER``   worker RANK exits abruptly (os._exit) when iteration ITER begins.
"""

from __future__ import annotations

import functools
import os
import signal


@functools.cache
def _items() -> tuple[tuple[str, ...], ...]:
    """The injected faults, parsed once (the environment is read at the first call)."""
    spec = os.environ.get("MPICODE_FAULT", "")
    return tuple(tuple(x.split(":")) for x in spec.split(",") if x)


def kill_at(iteration: int) -> None:
    for it in _items():
        if it[0] == "kill" and int(it[1]) == iteration:
            os.kill(os.getpid(), signal.SIGKILL)


def worker_fault(rank: int, iteration: int) -> str | None:
    """"hang" or "die" when this worker should fail at ``iteration``, else None."""
    for it in _items():
        if it[0] in ("hang", "die") and int(it[1]) == rank and iteration >= int(it[2]):
            if it[0] == "die":
                os._exit(17)
            return it[0]
    return None
