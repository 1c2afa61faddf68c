"""Fault injection for the fault tests, from the environment variable ``MPICODE_FAULT``
(comma-separated items), live only when the test switch ``MPICODE_TEST_FAULTS=1`` is set too:
in a normal run both variables are inert (a stray ``MPICODE_FAULT=kill:3`` in a shell must
not kill a real study). With the switch, a malformed item is one line (exit 2) before the
run starts:

* ``kill:ITER``       rank 0 SIGKILLs itself at the start of iteration ITER (the whole job dies),
* ``hang:RANK:ITER``  worker RANK stops answering from iteration ITER on: it drops every task
                      but still honours STOP, so the job can end,
* ``die:RANK:ITER``   worker RANK exits abruptly (os._exit) when iteration ITER begins,
* ``stop:RANK``       worker RANK stops itself (SIGSTOP) at the first start-up step, as a
                      ``kill -STOP`` during start-up would,
* ``sigkill:RANK:ITER[:P]`` worker RANK SIGKILLs itself in iteration ITER, mid-task: once
                      it computed P partitions (default 1) in that iteration, counted over
                      its tasks (one task: P partitions into it; a chunked scheme's: into
                      the chunk that reaches P), before that task's result is sent (the
                      elastic tests: a worker killed mid-iteration, ``--on-failure``),
* ``sigstop:RANK:ITER[:P]`` the same with SIGSTOP (a hung process), after writing its PID to
                      ``MPICODE_FAULT_MARK.RANK`` (if set), so that a test can SIGCONT it,
* ``pause:PLACE:SEC`` rank 0 sleeps SEC seconds when it reaches PLACE (``checkpoint``: before
                      each checkpoint write; ``shutdown``: before it stops the workers),
                      after creating the file named by ``MPICODE_FAULT_MARK`` (if set): the
                      signal tests hit those states for sure.
"""

from __future__ import annotations

import functools
import os
import signal

from mpicode.errors import UsageError

SWITCH = "MPICODE_TEST_FAULTS"
_FORMS = {"kill": "kill:ITER", "hang": "hang:RANK:ITER", "die": "die:RANK:ITER",
          "stop": "stop:RANK", "sigkill": "sigkill:RANK:ITER[:P]",
          "sigstop": "sigstop:RANK:ITER[:P]",
          "pause": "pause:checkpoint|shutdown:SEC"}


def _valid(item: tuple[str, ...]) -> bool:
    kind, args = item[0], item[1:]
    try:
        if kind == "kill":
            return len(args) == 1 and int(args[0]) >= 0
        if kind == "stop":
            return len(args) == 1 and int(args[0]) >= 1
        if kind in ("hang", "die"):
            return len(args) == 2 and int(args[0]) >= 1 and int(args[1]) >= 0
        if kind in ("sigkill", "sigstop"):
            return (len(args) in (2, 3) and int(args[0]) >= 1 and int(args[1]) >= 0
                    and (len(args) == 2 or int(args[2]) >= 1))
        if kind == "pause":
            return (len(args) == 2 and args[0] in ("checkpoint", "shutdown")
                    and 0 <= float(args[1]) < 3600)
    except ValueError:
        return False
    return False


@functools.cache
def _items() -> tuple[tuple[str, ...], ...]:
    """The injected faults, parsed and checked once (the environment is read at the first
    call); none unless the test switch is set."""
    if os.environ.get(SWITCH) != "1":
        return ()
    spec = os.environ.get("MPICODE_FAULT", "")
    items = tuple(tuple(x.strip().split(":")) for x in spec.split(",") if x.strip())
    for it in items:
        if not _valid(it):
            raise UsageError(f"MPICODE_FAULT {':'.join(it)!r}: expected one of "
                             f"{', '.join(_FORMS.values())} (comma-separated)")
    return items


def check() -> None:
    """Parse the faults now (train/simulate, before anything runs): a malformed one is one
    line, never a traceback in the middle of a run."""
    _items()


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


def stop_at_startup(rank: int) -> None:
    """``stop:RANK``: this worker stops itself (SIGSTOP) at its first start-up step."""
    for it in _items():
        if it[0] == "stop" and int(it[1]) == rank:
            os.kill(os.getpid(), signal.SIGSTOP)
_SIGNALLED: set = set()  # the sigkill/sigstop items already carried out (each fires once)


def signal_mid_task(rank: int, iteration: int, done: int) -> None:
    """SIGKILL (SIGSTOP) this worker if a ``sigkill`` (``sigstop``) item says so, ``done``
    partitions into ``iteration`` (counted over its tasks); once per item (a continued
    worker goes on)."""
    for it in _items():
        if it[0] in ("sigkill", "sigstop") and int(it[1]) == rank and it not in _SIGNALLED \
                and int(it[2]) == iteration and done >= (int(it[3]) if len(it) > 3 else 1):
            _SIGNALLED.add(it)
            mark = os.environ.get("MPICODE_FAULT_MARK")
            if it[0] == "sigstop" and mark:
                with open(f"{mark}.{rank}", "w") as f:
                    f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL if it[0] == "sigkill" else signal.SIGSTOP)


def pause(place: str) -> None:
    import time
    for it in _items():
        if it[0] == "pause" and it[1] == place:
            mark = os.environ.get("MPICODE_FAULT_MARK")
            if mark:  # created, never through a symlink, never truncated
                try:
                    os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644))
                except OSError:
                    pass
            time.sleep(float(it[2]))
