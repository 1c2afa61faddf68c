"""Fitting rank 0's cost model (docs/design.md §2.6) from its measured actions.

The coordinator cost model ``model`` (:class:`mpicode.engine.costs.ModelCost`) predicts the
in-process CPU seconds of each of rank 0's actions from the work it did: for every policy
(scheme, scheduler, ``engine`` for the row bookkeeping) and action (``begin``, ``result``,
``tick``, ``slot``, ``decode``, ``end``, ``rows``, ``log``), non-negative coefficients of the
features (:data:`mpicode.engine.costs.FEATURES`: 1, log2 N, N, tasks touched, partitions
dispatched, messages). This module runs short simulations of every registered scheme (and,
with an emulated uplink, every scheduler) at several N with a recording
:class:`mpicode.engine.rank0.Rank0`, times each action's thread CPU (not wall time: a
preemption is not work), and fits the coefficients by non-negative least squares, each N's
samples weighted alike::

    mpicode calibrate --policies --out profile.toml    # serial, ~1-2 min
    python -m mpicode.analysis.rank0_fit               # prints the reference table

``mpicode calibrate`` (MPI) adds the factor between that CPU time and rank 0's wall time
under MPI, and the per-message costs.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from mpicode import registry
from mpicode.config import Config, defaults, validate_for_size
from mpicode.engine import assembly
from mpicode.engine.costs import FEATURES, ModelCost
from mpicode.engine.rank0 import Rank0
from mpicode.engine.session import Session
from mpicode.errors import UsageError
from mpicode.simulator import prepare, sim_backend
from mpicode.wire import result_bytes

# the sizes and runs of a fit: several N for the log N and N terms, stragglers so that the
# schemes re-plan and cancel, a few iterations each (the first one warms up and is dropped)
FIT_N = (16, 64, 256, 1024)
QUICK_N = (16, 128)
ITERATIONS = 4
SCHEDULER_N = (8, 64, 256)


def nnls(X: np.ndarray, y: np.ndarray, iters: int = 50) -> np.ndarray:
    """Non-negative least squares (Lawson-Hanson active set, small problems)."""
    n = X.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, bool)
    w = X.T @ (y - X @ x)
    for _ in range(3 * n + iters):
        if passive.all() or (w[~passive] <= 1e-15 * max(1.0, np.abs(w).max())).all():
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(X[:, passive], y, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / np.maximum(x[neg] - z[neg], 1e-300))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
            if not passive.any():
                break
        w = X.T @ (y - X @ x)
    return x


def fit_call(works: list, cpu: np.ndarray) -> list[float]:
    """Coefficients of one (policy, action) from its samples: NNLS with each sample
    weighted by 1 / the mean time of its N, so that every N's total counts alike (the
    busy time an iteration adds up is what the model must get right, at small N as at
    large)."""
    X = np.array([w.features() for w in works], float)
    y = np.asarray(cpu, float)
    n = X[:, 2]
    wt = np.empty_like(y)
    for v in np.unique(n):
        sel = n == v
        wt[sel] = 1.0 / max(float(y[sel].mean()), 1e-9)
    coef = nnls(X * wt[:, None], y * wt)
    return [float(f"{c:.4g}") for c in coef]


def fit_table(records: list) -> dict:
    """The table ``{policy: {call: [coefficients]}}`` from recorded actions
    ``(policy, Work, cpu_s, wall_s)``; a ``default`` entry (the element-wise largest
    coefficients of the built-in schemes) serves policies the table does not know."""
    groups: dict[tuple[str, str], tuple[list, list]] = {}
    for policy, work, cpu, _ in records:
        ws, ts = groups.setdefault((policy, work.call), ([], []))
        ws.append(work)
        ts.append(cpu)
    table: dict = {}
    for (policy, call), (ws, ts) in sorted(groups.items()):
        table.setdefault(policy, {})[call] = fit_call(ws, np.asarray(ts))
    default: dict = {}
    for policy, calls in table.items():
        if policy == "engine":
            continue
        for call, c in calls.items():
            d = default.setdefault(call, [0.0] * len(FEATURES))
            default[call] = [max(a, b) for a, b in zip(d, c + [0.0] * (len(d) - len(c)),
                                                         strict=True)]
    table["default"] = default
    return table


def run_config(scheme: str, N: int, out: str, **kw):
    """A validated simulation configuration for a fit run."""
    v = dict(defaults().values)
    v.update(scheme=scheme, workers=N, compute="none", iterations=ITERATIONS, quiet=True,
             force=True, stragglers="shifted-exp", stragglers_tolerated=1, out=out,
             coordinator_cost="zero", seed=3)
    v.update(kw)
    return validate_for_size(Config(v), N)


def record_run(cfg, records: list) -> None:
    """Simulate ``cfg`` (logged to its ``out``, as a real run is) with rank 0's actions
    appended to ``records``; the first iteration (warm-up) is left out."""
    cfg, problem, scheme, uplink, stragglers, _ = prepare(cfg)
    mine: list = []
    session = Session(cfg, mode="simulated", n_workers=scheme.N, attrs={})
    session.open()
    run = assembly.build(scheme, stragglers, n_workers=scheme.N, uplink=uplink,
                         partition_cost=cfg.partition_cost, problem=problem,
                         msg_bytes=result_bytes(cfg.features),
                         rank0=Rank0(n_workers=scheme.N, virtual=True, record=mine),
                         backend=sim_backend(problem),
                         hooks=[*assembly.standard_hooks(cfg, scheme.N), *session.hooks()])
    session.run(run.trainer)
    cut = next((i for i, (_, w, _, _) in enumerate(mine) if w.call == "log"), 0)
    records += mine[cut + 1:]


def measure(schemes=None, Ns=FIT_N, schedulers=None, log=None) -> list:
    """Recorded actions of every registered scheme at each N, and of every scheduler with an
    emulated uplink. Schemes that cannot run at an N (divisibility, tolerance) are skipped."""
    schemes = list(registry.schemes()) if schemes is None else list(schemes)
    schedulers = list(registry.schedulers()) if schedulers is None else list(schedulers)
    records: list = []
    with tempfile.TemporaryDirectory(prefix="mpicode-rank0-") as tmp:
        out = str(Path(tmp) / "fit.h5")
        for name in schemes:
            for N in Ns:
                try:
                    cfg = run_config(name, N, out, partitions=4 * N)
                except UsageError as e:
                    if log:
                        log(f"  {name} N={N}: skipped ({e})")
                    continue
                if name == "cyclic" and math.comb(N, 1) * N ** 3 > 2e7:
                    if log:
                        log(f"  {name} N={N}: skipped (its code search is O(N^3))")
                    continue
                if log:
                    log(f"  {name} N={N}")
                record_run(cfg, records)
        for name in schedulers:
            for N in SCHEDULER_N:
                cfg = run_config("uncoded", N, out, partitions=4 * N, channel="rayleigh",
                                 scheduler=name)
                if log:
                    log(f"  scheduler {name} N={N}")
                record_run(cfg, records)
    return records


def check(table: dict, records: list) -> dict:
    """How well the table predicts the recorded CPU: per (policy, call), the ratio of the
    summed prediction to the summed measurement."""
    m = ModelCost(table)
    sums: dict = {}
    for policy, work, cpu, _ in records:
        s = sums.setdefault(f"{policy}.{work.call}", [0.0, 0.0])
        s[0] += m.cpu_s(policy, work)
        s[1] += cpu
    return {k: (p / c if c > 0 else math.nan) for k, (p, c) in sorted(sums.items())}


def render(table: dict, header: str) -> str:
    """The reference module's text (:mod:`mpicode.engine.rank0_reference`)."""
    lines = ["TABLE = {"]
    for policy in sorted(table):
        lines.append(f"    {policy!r}: {{")
        for call in sorted(table[policy]):
            lines.append(f"        {call!r}: {table[policy][call]!r},")
        lines.append("    },")
    lines.append("}")
    return header + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    quick = "--quick" in (argv or sys.argv[1:])
    recs = measure(Ns=QUICK_N if quick else FIT_N, log=lambda s: print(s, file=sys.stderr))
    table = fit_table(recs)
    print(render(table, ""))
    for k, r in check(table, recs).items():
        print(f"# {k}: predicted / measured CPU {r:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
