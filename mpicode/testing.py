"""Conformance checks for plugin authors (pure: no MPI, no clock): :func:`check_scheme`,
:func:`check_straggler_model` and :func:`check_channel` (at the end of this module).

::

    from mpicode.testing import check_scheme
    check_scheme(MyScheme)                     # random sizes, tolerances, speeds, stragglers
    check_scheme(TwoStage, rho=0.75, stage2_tolerance=1)

Each trial draws a size (N, K, s) that the class's ``validate_size`` accepts, persistent
per-worker speeds, a straggler set (up to s workers, 5-50x slower, different every
iteration) and per-task noise, so completion orders vary; then it runs a few iterations
through the engine's own event loop (:class:`mpicode.engine.events.EventLoop`, virtual
time, virtual workers, assembled by :func:`mpicode.engine.assembly.build`: the tie order,
cancels and checks of ``train`` and ``simulate``):
``begin``, results and ``on_tick`` at ``next_deadline`` in time order (a cancelled task
frees its worker; its result sometimes still arrives, as when a CANCEL races the send, and
the engine drops it; a task with a ``time_limit`` stops as the worker would and reports how
many partitions its message sums) until ``done``, then ``decode``, ``outstanding``,
``end``. It asserts, with a message naming the trial:

* the iteration finishes (every task eventually completes, within 100,000 events), and every
  answer is one the engine can carry out (``Actions`` with tasks for workers 0..N-1, a
  cancelled task no longer pending);
* the decode uses only arrived tasks of this iteration; with random per-partition vectors
  g_k, an exact scheme's decoded sum equals sum_k g_k to 1e-9 and gives every partition a
  total weight of exactly 1 (each partition counted once); a non-exact one gives every
  covered partition the same weight (counted once, then scaled) and reports that coverage;
* ``end()`` returns ``load`` and every declared ``log_fields`` entry, castable to its dtype;
* nothing is pending after ``outstanding``; ``log_notes`` are strings;
* ``state_dict()`` holds only numbers and numeric arrays, and a fresh instance that loads it
  gives the same ``state_dict()``.

Trials come from hypothesis (seeds, shrunk on failure) when it is installed, else from a
seeded loop; either way an ``AssertionError`` says what broke.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from mpicode.core_options import OPTIONS
from mpicode.engine import assembly
from mpicode.engine.rows import IterationInfo
from mpicode.errors import PluginError

ITERATIONS = 3
DIM = 3
MAX_EVENTS = 100_000  # an iteration that needs more never ends (a deadline that never moves)


def _fail(ctx: str, msg: str):
    raise AssertionError(f"check_scheme: {ctx}: {msg}")


def _size(cls, rng, n_workers, n_partitions, tolerance, opts):
    """A (N, K, s) the class accepts (its validate_size), drawn at random."""
    for _ in range(200):
        N = n_workers or int(rng.integers(1, 11))
        s = tolerance if tolerance is not None else int(rng.integers(0, N))
        K = n_partitions or (N * int(rng.integers(1, 5)) if rng.random() < 0.7
                             else N + int(rng.integers(0, 3 * N + 1)))
        cfg = SimpleNamespace(stragglers_tolerated=s, **opts)
        try:
            cls.validate_size(cfg, N, K)
        except Exception:
            continue
        return N, K, s
    _fail(cls.__name__, "found no size (N, K, s) that validate_size accepts")


def _options(cls, params: dict) -> dict:
    opts = {o.name: o.default for o in getattr(cls, "options", ())}
    opts.update(params)
    return opts


class _Durations:
    """One trial's straggler model: each dispatched task's whole run time is its "delay"
    (the partition cost is 0): the worker's speed, +-20% noise, 5-50x for this iteration's
    stragglers (``slow``)."""

    def __init__(self, rng, tau):
        self.rng, self.tau = rng, tau
        self.slow: set[int] = set()

    def delay(self, it: int, worker: int, index: int, n: int) -> float:
        d = n * self.tau[worker] * (1 + 0.2 * self.rng.random())
        if worker in self.slow:
            d *= self.rng.uniform(5, 50)
        return d + 1e-6 * self.rng.random()


class _LateResults:
    """One trial's driver hooks: now and then a cancelled task's result still arrives, when
    its compute would have finished (a CANCEL that raced the send); the engine must drop
    it."""

    def __init__(self, rng, vworkers, inbox):
        self.rng, self.vw, self.inbox = rng, vworkers, inbox

    def cancel(self, task) -> None:  # (called before the workers' model forgets the task)
        t_done = self.vw.finish.get(task.task_id)
        if self.rng.random() < 0.3 and t_done is not None:
            self.inbox.arrived(task.task_id, t_done)


def _event_loop(scheme, rng, tau):
    """The engine's event loop in virtual time (zero costs) driving ``scheme``, assembled
    as every run is (:func:`mpicode.engine.assembly.build`)."""
    durations = _Durations(rng, tau)
    run = assembly.build(scheme, durations, n_workers=scheme.N, partition_cost=0.0,
                         backend=lambda **p: _LateResults(rng, p["vworkers"], p["inbox"]))
    return run.events, durations


def _too_long(it: int, events: int) -> None:
    if events >= MAX_EVENTS:
        raise RuntimeError(f"iteration {it} did not finish within {MAX_EVENTS} events")


def _run_iteration(scheme, events, it: int, ctx: str):
    """One iteration, the way the run loop has it: the event loop until the scheme can
    decode, then decode, cancel what is outstanding, end. Returns (decoding, summary,
    arrived ids, exact)."""
    info = IterationInfo(scheme.N)
    try:
        t = events.run(it, info, 0.0, heartbeat=_too_long)
    except PluginError as e:  # an answer the engine cannot carry out
        _fail(ctx, str(e))
    except RuntimeError as e:  # stuck, or a deadline that never moves
        _fail(ctx, f"iteration {it} cannot finish: {e}")
    arrived = {tid for tid, x in scheme.tasks.items() if x.state == "done"}
    exact = bool(scheme.exact)
    dec = scheme.decode()
    events.cancel(it, scheme.outstanding(t), t)
    summary = scheme.end(t)
    return dec, summary, arrived, exact


def _check_decode(scheme, dec, arrived, exact, ctx):
    g = np.random.default_rng(7).standard_normal((scheme.K, DIM))
    total = np.zeros(DIM)
    c = np.zeros(scheme.K)
    for tid, w in dec.weights.items():
        if tid not in arrived:
            _fail(ctx, f"decode weights task {tid}, which did not arrive")
        task = scheme.tasks[tid]
        parts = np.asarray(task.computed)   # a time limit: the prefix its message sums
        if parts.size and (parts.min() < 0 or parts.max() >= scheme.K):
            _fail(ctx, f"task {tid} has partitions outside 0..K-1")
        coeffs = np.ones(len(parts)) if task.coeffs is None else \
            np.asarray(task.coeffs)[:len(parts)]
        total += w * (coeffs @ g[parts])
        np.add.at(c, parts, w * coeffs)
    if exact:
        err = np.abs(total - g.sum(axis=0)).max()
        if err > 1e-9 * max(1.0, np.abs(g).sum()):
            _fail(ctx, f"exact decode is off the true sum by {err:.3e}")
        if np.abs(c - 1).max() > 1e-9:
            bad = np.flatnonzero(np.abs(c - 1) > 1e-9)[:5].tolist()
            _fail(ctx, f"partitions {bad} are not counted exactly once (weights "
                       f"{c[bad].round(6).tolist()})")
        return
    covered = np.abs(c) > 1e-9
    if covered.any() and np.ptp(c[covered]) > 1e-9 * np.abs(c[covered]).max():
        _fail(ctx, "a non-exact decode weights its covered partitions unequally")
    if abs(covered.mean() - dec.coverage) > 1e-9:
        _fail(ctx, f"coverage {dec.coverage} but {covered.mean()} of the partitions covered")


def _check_end(scheme, summary, ctx):
    if not isinstance(summary, dict) or "load" not in summary:
        _fail(ctx, "end() must return a dict with 'load'")
    for k, dt in getattr(scheme, "log_fields", {}).items():
        if k not in summary:
            _fail(ctx, f"end() lacks declared log field {k!r}")
        try:
            np.asarray(summary[k]).astype(dt)
        except (TypeError, ValueError):
            _fail(ctx, f"log field {k!r} = {summary[k]!r} does not fit dtype {dt}")
    if scheme.pending():
        _fail(ctx, "tasks still pending after outstanding()")
    if not all(isinstance(n, str) for n in scheme.log_notes):
        _fail(ctx, "log_notes must be strings")


def _check_state(cls, scheme, make, ctx):
    state = scheme.state_dict()
    for k, v in state.items():
        a = np.asarray(v)
        if a.dtype.kind not in "biuf":
            _fail(ctx, f"state_dict()[{k!r}] is not numeric ({a.dtype})")
    fresh = make()
    fresh.load_state_dict(state)
    again = fresh.state_dict()
    if set(again) != set(state) or not all(
            np.array_equal(np.asarray(again[k]), np.asarray(state[k]), equal_nan=True)
            for k in state):
        _fail(ctx, "load_state_dict(state_dict()) does not give the same state back")


def _trial(cls, seed: int, n_workers, n_partitions, tolerance, params):
    rng = np.random.default_rng(seed)
    opts = _options(cls, params)
    N, K, s = _size(cls, rng, n_workers, n_partitions, tolerance, opts)
    ctx = f"{cls.__name__} seed={seed} N={N} K={K} s={s} {params or ''}".rstrip()

    def make():
        return cls(N, K, tolerance=s, seed=seed, **opts)

    try:
        scheme = make()
    except Exception as e:
        _fail(ctx, f"constructor refused a size validate_size accepts: {e}")
    tau = rng.uniform(0.5, 2.0, N)
    events, world = _event_loop(scheme, rng, tau)
    for it in range(ITERATIONS):
        slow = set(rng.choice(N, size=int(rng.integers(0, min(s, N) + 1)), replace=False)
                   .tolist())
        world.slow = slow
        ictx = f"{ctx} iteration {it} stragglers {sorted(slow)}"
        dec, summary, arrived, exact = _run_iteration(scheme, events, it, ictx)
        _check_decode(scheme, dec, arrived, exact, ictx)
        _check_end(scheme, summary, ictx)
    _check_state(cls, scheme, make, ctx)


def check_scheme(cls, *, trials: int = 25, seed: int = 0, n_workers: int | None = None,
                 n_partitions: int | None = None, tolerance: int | None = None,
                 **params) -> None:
    """Run the conformance check on scheme class ``cls``; ``params`` are its options
    (e.g. ``rho=0.75``), fixed for every trial; N, K and s are drawn unless given. Raises
    AssertionError on the first failure."""
    args = (n_workers, n_partitions, tolerance, params)
    try:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import strategies as st
    except ImportError:
        for i in range(trials):
            _trial(cls, seed + i, *args)
        return

    # no shrinking: a trial's seed is opaque (a smaller one is no simpler a case), and a
    # trial that runs into the event limit would be re-run for minutes
    @settings(max_examples=trials, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck),
              phases=(Phase.explicit, Phase.reuse, Phase.generate))
    @given(st.integers(0, 2**31 - 1))
    def run(s):
        _trial(cls, s + seed, *args)

    run()


# ---- straggler models and channels ---------------------------------------------------------
def _model_config(cls, params: dict, **core):
    """A configuration for ``cls.from_config``: the core options at their defaults (plus
    ``core``), the class's options at theirs, ``params`` on top."""
    values = {o.name: o.default for o in OPTIONS}
    values.update(core)
    values.update(_options(cls, params))
    return SimpleNamespace(**values)


def _finite_nonneg(x, what: str, ctx: str, allow_inf: bool = False) -> None:
    a = np.asarray(x, dtype=float)
    ok = (a >= 0) & (np.isfinite(a) | (allow_inf & np.isinf(a)))
    if not np.all(ok):
        raise AssertionError(f"{ctx}: {what} must be finite and >= 0, got {x!r}")


def check_straggler_model(cls, *, trials: int = 12, seed: int = 0, iterations: int = 6,
                          n_workers: int | None = None, **params) -> None:
    """Assert that a straggler model class keeps the contract every driver relies on.

    For random sizes (N workers, K partitions), both ``--delay-form`` values and a few
    seeds, two instances built by ``cls.from_config`` are asked for the delays of the same
    (iteration, worker, task index, partitions) keys, one in order, the other shuffled and
    interleaved with ``rate``, ``one_off`` and ``worker_profile`` calls: the answers must be
    equal bit for bit (a draw is a function of the seed and its counters, never of the order
    of calls), and every delay, rate and one-off finite and >= 0. ``params`` set the class's
    options, or any core option (``check_straggler_model(Bimodal, slowdown=3.0)``;
    ``stragglers="trace:RUN.h5"``); ``n_workers`` fixes N. Raises ``AssertionError`` naming
    the trial that failed.
    """
    rng = np.random.default_rng(seed)
    name = getattr(cls, "name", cls.__name__)
    for trial in range(trials):
        N = n_workers or int(rng.integers(1, 9))
        K = N * int(rng.integers(1, 4))
        form = ("worker", "task")[trial % 2]
        s = int(rng.integers(0, 2**31))
        ctx = f"check_straggler_model: {name} trial {trial} (N={N}, K={K}, seed={s}, " \
              f"delay_form={form})"
        cfg = _model_config(cls, params, seed=s, delay_form=form, iterations=iterations,
                            stragglers=name)
        a, b = cls.from_config(cfg, N, K), cls.from_config(cfg, N, K)
        keys = [(it, w, j, int(rng.integers(1, K + 1))) for it in range(iterations)
                for w in range(N) for j in range(3)]
        want = [a.delay(*k) for k in keys]
        _finite_nonneg(want, "delays", ctx)
        order = rng.permutation(len(keys))
        got = [None] * len(keys)
        for i in order:  # shuffled, with the oracle's questions in between
            it, w = keys[i][0], keys[i][1]
            _finite_nonneg(b.rate(it, w, keys[i][2]), "rate()", ctx)
            _finite_nonneg(b.one_off(it, w), "one_off()", ctx)
            got[i] = b.delay(*keys[i])
        diff = [k for k, x, y in zip(keys, want, got, strict=True) if x != y]
        if diff:
            raise AssertionError(f"{ctx}: delay {diff[0]} depends on the order of calls")
        for it in reversed(range(iterations)):
            c, d = a.worker_profile(it, 1e-3)
            if np.shape(c) != (N,) or np.shape(d) != (N,):
                raise AssertionError(f"{ctx}: worker_profile must give two arrays of N")
            _finite_nonneg(c, "worker_profile seconds per partition", ctx)
            _finite_nonneg(d, "worker_profile one-off seconds", ctx)
            c2, d2 = b.worker_profile(it, 1e-3)
            if not (np.array_equal(c, c2) and np.array_equal(d, d2)):
                raise AssertionError(f"{ctx}: worker_profile({it}) depends on the order of "
                                     "calls")


def check_channel(cls, *, trials: int = 6, seed: int = 0, n_workers: int | None = None,
                  **params) -> None:
    """Assert that a channel class keeps the contract every driver relies on.

    For random N and seeds, two instances built by ``cls.from_config`` are asked for the
    rates of the same slots (within a block, across block edges, far ahead), one in order,
    the other shuffled: equal bit for bit (``rates(s)`` is a function of the seed and ``s``
    only); every rate is >= 0 and finite (``inf`` only for an ``ideal`` channel), an array
    of N; ``samples`` agrees with ``rates``; ``mean_rates`` is N rates >= 0. ``params`` set
    the class's options (or core ones); ``n_workers`` fixes N. Raises ``AssertionError``
    naming the trial that failed.
    """
    rng = np.random.default_rng(seed)
    name = getattr(cls, "name", cls.__name__)
    for trial in range(trials):
        N = n_workers or int(rng.integers(1, 9))
        s = int(rng.integers(0, 2**31))
        ctx = f"check_channel: {name} trial {trial} (N={N}, seed={s})"
        cfg = _model_config(cls, params, seed=s, channel=name)
        a, b = cls.from_config(cfg, N), cls.from_config(cfg, N)
        inf = bool(getattr(a, "ideal", False))
        slots = sorted({0, 1, 1023, 1024, 1025, 3000, 5 * 1024 + 7,
                        *map(int, rng.integers(0, 20000, 12))})
        want = {t: np.array(a.rates(t), dtype=float) for t in slots}
        for t, r in want.items():
            if r.shape != (N,):
                raise AssertionError(f"{ctx}: rates({t}) must be an array of N={N}")
            _finite_nonneg(r, f"rates({t})", ctx, allow_inf=inf)
        for t in rng.permutation(slots):
            if not np.array_equal(np.asarray(b.rates(int(t)), float), want[int(t)]):
                raise AssertionError(f"{ctx}: rates({t}) depends on the order of calls")
        block = np.asarray(a.samples(1020, 8), dtype=float)
        if not np.array_equal(block, np.stack([np.asarray(a.rates(t), float)
                                               for t in range(1020, 1028)])):
            raise AssertionError(f"{ctx}: samples(1020, 8) differs from rates()")
        mean = np.asarray(a.mean_rates(), dtype=float)
        if mean.shape != (N,):
            raise AssertionError(f"{ctx}: mean_rates() must be an array of N={N}")
        _finite_nonneg(mean, "mean_rates()", ctx, allow_inf=inf)
