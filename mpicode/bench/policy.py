"""``mpicode bench policy``: the schemes' own CPU per result event and per iteration against N.

    mpicode bench policy [--workers 64,1024,10000,100000] [--budget 120] [--json] [--quick]

For every registered scheme and every N, in this process: the simulator's path
(:func:`mpicode.simulator.Simulator`, ``--compute none``, ``--stragglers shifted-exp`` with its
default parameters, K = the default partitions, 4N, s = the default 1, every scheme option at
its default), a few iterations, and the thread CPU time spent *inside the scheme* (``begin``,
``on_result``, ``on_tick``, ``next_deadline``, ``done``, ``decode``, ``outstanding``, ``end``:
every call a driver makes; the simulator's own work, the rows and the oracle are not
counted). Reported:

* ``us_per_event``: the CPU of the event calls (``on_result``, ``on_tick`` and the
  ``done``/``next_deadline`` polls the event loop makes after each event) per result event;
* ``ms_per_iteration``: all of the scheme's CPU per iteration (the first iteration, which has
  no speed history, is left out when more than one ran);
* per scheme, the log-log slope of the per-iteration CPU over N: from N = 1,000 (the
  smallest N >= 1000 measured) to the largest, and over every N measured.

A scheme that cannot run at an N (its ``validate_size``, e.g. ``frc`` needs (s+1) | N) is
listed with the reason; one that does not finish an iteration within ``--budget``
CPU seconds (default 120) is stopped there and listed as such (then, larger N are not
tried).
The timer's own cost per call (measured on an empty method) is subtracted. The first
iteration (no speed history) is reported apart (``1st it ms``); if it alone exceeds the
budget, the steady iterations run with speed estimates seeded from the straggler model and the
row says so (``seeded``). ``cyclic``'s
decode is polynomial in N by nature under Tandon's random construction (a least-squares
solve on an (N - s) x N matrix); at the default s = 1 and even N it uses the circulant code,
whose closed-form decode is O(N s).
"""

from __future__ import annotations

import json
import math
import signal
import time

import numpy as np

from mpicode import registry
from mpicode.config import Config, UsageError, defaults, validate_for_size
from mpicode.engine.costs import run_partition_cost
from mpicode.models.stragglers import make_straggler_model
from mpicode.schemes import make_scheme
from mpicode.simulator import Simulator

NS = (64, 1024, 10_000, 100_000)
EVENT_METHODS = ("on_result", "on_tick", "next_deadline", "done")
METHODS = ("begin", *EVENT_METHODS, "decode", "outstanding", "end")


class _OverBudget(Exception):
    pass


class TimedScheme:
    """A scheme behind a proxy that adds this thread's CPU time spent in each driver-facing
    method (calls the scheme makes to itself are not counted twice)."""

    # the straggler-free replay (ideal_s) is not the scheme's cost and would double the
    # bench's time: the proxy asks the run not to replay it
    replayable = False

    def __init__(self, scheme):
        self._s = scheme
        self.cpu = dict.fromkeys(METHODS, 0.0)
        self.calls = dict.fromkeys(METHODS, 0)
        for name in METHODS:
            setattr(self, name, self._timed(name, getattr(scheme, name)))

    def _timed(self, name, f):
        cpu, calls, clock = self.cpu, self.calls, time.thread_time

        def timed(*a, **kw):
            t0 = clock()
            try:
                return f(*a, **kw)
            finally:
                cpu[name] += clock() - t0
                calls[name] += 1
        return timed

    def __getattr__(self, name):
        return getattr(self._s, name)

    def snapshot(self) -> tuple[dict, dict]:
        return dict(self.cpu), dict(self.calls)


def timer_overhead(n: int = 20000) -> float:
    """CPU seconds the proxy adds to one call (an empty method, median of 5 runs)."""
    class Empty:
        def __getattr__(self, name):
            return lambda *a, **k: None

    p = TimedScheme(Empty())
    runs = []
    for _ in range(5):
        c0 = p.cpu["done"]
        for _ in range(n):
            p.done()
        runs.append((p.cpu["done"] - c0) / n)
    return float(np.median(runs))


def config(name: str, N: int):
    """``mpicode simulate --workers N --compute none --scheme NAME --stragglers shifted-exp``'s
    configuration (every other option at its default)."""
    v = dict(defaults().values)
    v.update(scheme=name, compute="none", stragglers="shifted-exp", quiet=True)
    return validate_for_size(Config(v), N)


def iterations_at(N: int) -> int:
    return 6 if N <= 1024 else 3 if N <= 10_000 else 2


def _iterations(cfg, N: int, first: int, count: int, budget_s: float, row: dict,
                seed_history: bool = False) -> list:
    """Run ``count`` iterations from ``first`` in the simulator, within ``budget_s`` of CPU;
    the proxy's (cpu, calls) before and after each. ``seed_history``: the scheme starts with
    the straggler model's rates of iteration 0 as its speed estimates."""
    K = cfg.partitions
    cost = run_partition_cost(cfg, None, K)
    c0 = time.thread_time()
    scheme = make_scheme(cfg, N, K)
    model = make_straggler_model(cfg, N, K)
    if seed_history:
        scheme.load_state_dict({"tau": model.worker_profile(0, cost)[0]})
    row.setdefault("setup_s", time.thread_time() - c0)
    timed = TimedScheme(scheme)
    sim = Simulator(timed, model, n_workers=N, partition_cost=cost)
    per_it = []
    armed = _arm(budget_s)
    try:
        for it in range(first, first + count):
            before = timed.snapshot()
            sim.iteration(it)
            per_it.append((before, timed.snapshot()))
    except _OverBudget:
        row["over_budget"] = True
    finally:
        _disarm(armed)
    return per_it


def measure(name: str, N: int, budget_s: float, overhead: float,
            iterations: int | None = None) -> dict:
    """One cell: the scheme's CPU per event and per iteration at N (raises
    :class:`~mpicode.config.UsageError` if the scheme cannot run at N).

    The iterations run in order from the first, which has no speed history; the per-event
    and per-iteration figures leave it out when later ones ran (``cold_ms``: its own CPU;
    ``steady``: later ones were measured). If the first iteration alone exceeds the budget,
    it is stopped there (``cold_over_budget``) and the others run on a fresh scheme whose
    speed estimates are seeded with the straggler model's own rates (``seeded``), so that a
    scheme whose first iteration is slow still has its steady cost measured, and says so."""
    cfg = config(name, N)
    its = iterations or iterations_at(N)
    row = {"scheme": name, "N": N, "K": cfg.partitions, "iterations": 0}
    t_wall = time.perf_counter()
    per_it = _iterations(cfg, N, 0, its, budget_s, row)
    if per_it:
        row["cold_ms"] = 1e3 * sum(b[0][m] - a[0][m] for a, b in per_it[:1] for m in METHODS)
        use = per_it[1:] or per_it
        row["steady"] = len(per_it) > 1
    elif row.pop("over_budget", False):  # the first iteration alone: steady cost seeded
        row["cold_over_budget"] = row["seeded"] = True
        use = _iterations(cfg, N, 1, max(1, its - 1), budget_s, row, seed_history=True)
        row["steady"] = bool(use)
    else:
        use = []
    row["wall_s"] = time.perf_counter() - t_wall
    row["iterations"] = len(per_it) + (len(use) if row.get("seeded") else 0)
    if use:
        row.update(_summary(use, overhead))
    return row


def _summary(use: list, overhead: float) -> dict:
    """Per event and per iteration CPU of these iterations, the timer's cost subtracted."""
    cpu = {m: sum(b[0][m] - a[0][m] for a, b in use) for m in METHODS}
    calls = {m: sum(b[1][m] - a[1][m] for a, b in use) for m in METHODS}
    net = {m: max(0.0, cpu[m] - calls[m] * overhead) for m in METHODS}
    n_it, events = len(use), max(1, calls["on_result"])
    return dict(
        measured_iterations=n_it,
        events_per_iteration=calls["on_result"] / n_it,
        ticks_per_iteration=calls["on_tick"] / n_it,
        us_per_event=1e6 * sum(net[m] for m in EVENT_METHODS) / events,
        us_per_on_result=1e6 * net["on_result"] / events,
        ms_per_iteration=1e3 * sum(net.values()) / n_it,
        ms_by_method={m: 1e3 * net[m] / n_it for m in METHODS},
    )


def _arm(budget_s: float):
    """Raise :class:`_OverBudget` in this (main) thread after ``budget_s`` seconds of this
    process's CPU time (not wall time: a shared machine's load does not stop a cell early)."""
    if not budget_s or budget_s <= 0:
        return None
    try:
        old = signal.signal(signal.SIGPROF, _alarm)
    except ValueError:  # not the main thread: no budget
        return None
    signal.setitimer(signal.ITIMER_PROF, budget_s)
    return old


def _alarm(signum, frame):
    raise _OverBudget()


def _disarm(old) -> None:
    if old is None:
        return
    signal.setitimer(signal.ITIMER_PROF, 0)
    signal.signal(signal.SIGPROF, old)


def slope(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def parse_workers(workers) -> tuple[int, ...]:
    if workers is None:
        return NS
    try:
        ns = tuple(int(n) for n in str(workers).split(","))
    except ValueError:
        raise UsageError(f"--workers {workers!r}: give worker counts like 64,1024") from None
    if not ns or min(ns) < 1:
        raise UsageError(f"--workers {workers!r}: every N must be >= 1")
    return ns


def _cells(ns, budget_s: float, overhead: float, say) -> tuple[list, list]:
    """Every registered scheme at every N: (rows, notes)."""
    rows, notes = [], []
    for name in registry.schemes():
        stop = None
        for N in ns:
            if stop:
                rows.append({"scheme": name, "N": N, "skipped": stop})
                continue
            try:
                r = measure(name, N, budget_s, overhead)
            except UsageError as e:
                rows.append({"scheme": name, "N": N, "skipped": str(e)})
                say(f"{name:>18} {N:>7}  cannot run: {e}")
                continue
            except (RuntimeError, MemoryError) as e:  # e.g. cyclic's B at large N
                rows.append({"scheme": name, "N": N, "skipped": f"{type(e).__name__}: {e}"})
                say(f"{name:>18} {N:>7}  failed: {e}")
                stop = f"failed at N={N}"
                continue
            rows.append(r)
            if r.get("over_budget"):
                notes.append(f"{name} N={N}: stopped after {r['iterations']} iteration(s) "
                             f"({r['wall_s']:.0f} s of wall time): over the {budget_s:g} s "
                             "CPU budget")
                stop = f"N={N} was over the budget"
            if r.get("cold_over_budget"):
                notes.append(f"{name} N={N}: the first iteration (no speed history) did not "
                             f"finish in {budget_s:g} s of CPU; the steady cost was measured "
                             "with speed estimates seeded from the straggler model")
            say(_line(r, budget_s))
    return rows, notes


def _line(r: dict, budget_s: float) -> str:
    name, N = r["scheme"], r["N"]
    if "ms_per_iteration" not in r:
        return f"{name:>18} {N:>7} {r['K']:>7}   -  no iteration within {budget_s:g} s of CPU"
    cold = (f"{r['cold_ms']:>10.1f}" if "cold_ms" in r
            else f"{'>budget':>10}" if r.get("cold_over_budget") else f"{'-':>10}")
    return (f"{name:>18} {N:>7} {r['K']:>7} {r['measured_iterations']:>3} "
            f"{r['events_per_iteration']:>10.0f} {r['us_per_event']:>9.2f} "
            f"{r['ms_per_iteration']:>13.2f} {cold} {r['wall_s']:>7.1f}"
            + ("" if r.get("steady") else "  (first iteration only)")
            + ("  (seeded)" if r.get("seeded") else ""))


def _fits(rows: list) -> dict:
    """Per scheme, the log-log slope of the steady CPU per iteration over N (from N =
    1,000 up, and over every N)."""
    fits = {}
    for name in registry.schemes():
        done = [r for r in rows if r["scheme"] == name and r.get("steady")]
        big = [r for r in done if r["N"] >= 1000]
        fits[name] = {
            "slope_1000_up": slope([r["N"] for r in big], [r["ms_per_iteration"] for r in big])
            if len(big) >= 2 else math.nan,
            "slope_all": slope([r["N"] for r in done], [r["ms_per_iteration"] for r in done]),
            "range": [min((r["N"] for r in big), default=None),
                      max((r["N"] for r in big), default=None)],
        }
    return fits


def run(as_json: bool = False, quick: bool = False, workers=None,
        budget: float | None = None) -> dict:
    ns = parse_workers(workers) if workers else ((64, 1024) if quick else NS)
    budget_s = 120.0 if budget is None else float(budget)
    if budget_s <= 0:
        raise UsageError(f"--budget {budget}: must be > 0 seconds")
    overhead = timer_overhead()
    say = (lambda *a: None) if as_json else (lambda s: print(s, flush=True))
    say(f"policy CPU in process (timer overhead {overhead * 1e6:.2f} us a call, "
        f"subtracted); budget {budget_s:g} s of CPU per scheme and N")
    say(f"{'scheme':>18} {'N':>7} {'K':>7} {'its':>3} {'events/it':>10} {'us/event':>9} "
        f"{'ms/iteration':>13} {'1st it ms':>10} {'wall s':>7}")
    rows, notes = _cells(ns, budget_s, overhead, say)
    fits = _fits(rows)
    res = {"timer_overhead_us": overhead * 1e6, "budget_s": budget_s, "rows": rows,
           "fits": fits, "notes": notes}
    if as_json:
        print(json.dumps(res, indent=2))
        return res
    say("log-log slope of the steady CPU per iteration over N (1,000 up / every N):")
    for name, f in fits.items():
        lo, hi = f["range"]
        rng = f" (N {lo}..{hi})" if lo is not None and hi is not None and lo != hi else ""
        say(f"{name:>18}: {f['slope_1000_up']:.2f}{rng} / {f['slope_all']:.2f}")
    for r in rows:
        if "skipped" in r:
            say(f"not run: {r['scheme']} N={r['N']}: {r['skipped']}")
    for n in notes:
        say(f"note: {n}")
    return res


if __name__ == "__main__":
    import sys
    run(as_json="--json" in sys.argv, quick="--quick" in sys.argv)
