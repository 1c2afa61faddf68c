"""When workers die: the failure model of ``simulate`` and ``train --delay-mode virtual``
(pure, seeded; docs/design.md §2.7).

Two sources, joined:

* ``--fail WORKER@TIME`` (repeatable, or comma-separated): worker WORKER dies TIME seconds
  into training (the run clock: virtual seconds since the first iteration began), or
  ``WORKER@iITER``: when iteration ITER begins (its tasks are dispatched, then lost), or
  ``WORKER@iITER+SECONDS``: that many seconds into iteration ITER (mid-iteration; if the
  iteration ends sooner, at the start of the next one);
* ``--failure-model exponential``: every worker's lifetime is drawn once, Exp(mean
  ``--lifetime-mean`` seconds), from a generator seeded by (``--failure-seed``, default
  ``--seed``, and a tag), so the same seed kills the same workers at the same times whatever
  the scheme.

A worker dies at most once (its earliest failure counts). Rank 0 learns of a death
``--detect-s`` seconds later (``detect_s``; 0 by default), as ULFM's detector would: in
between, the worker's results never come.

Example (8 workers, worker 3 dies 2.5 s in, worker 5 when iteration 40 begins)::

    mpicode simulate --workers 8 --scheme cyclic --on-failure continue \\
        --fail 3@2.5 --fail 5@i40 --out runs/fail.h5
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpicode.core_options import FAILURE_MODELS
from mpicode.errors import UsageError


@dataclass(frozen=True, order=True)
class Failure:
    """Worker ``worker`` dies at run time ``time`` (seconds), or, if ``iteration`` >= 0,
    ``offset`` seconds after that iteration began."""

    worker: int
    time: float = math.inf
    iteration: int = -1
    offset: float = 0.0

    def text(self) -> str:
        if self.iteration < 0:
            return f"{self.worker}@{self.time:g}"
        return f"{self.worker}@i{self.iteration}" + (f"+{self.offset:g}" if self.offset else "")


def parse_fail(spec: str) -> list[Failure]:
    """``"3@2.5,5@i40"`` -> failures (UsageError naming the bad item)."""
    out = []
    for item in (x.strip() for x in (spec or "").split(",")):
        if not item:
            continue
        w, sep, when = item.partition("@")
        try:
            if not sep or not w.strip().isdigit():
                raise ValueError
            worker = int(w)
            if when.startswith("i"):
                it, _, off = when[1:].partition("+")
                it, off = int(it), float(off or 0.0)
                if it < 0 or not math.isfinite(off) or off < 0:
                    raise ValueError
                out.append(Failure(worker, iteration=it, offset=off))
            else:
                t = float(when)
                if not math.isfinite(t) or t < 0:
                    raise ValueError
                out.append(Failure(worker, time=t))
        except ValueError:
            raise UsageError(f"--fail {item!r}: expected WORKER@SECONDS, WORKER@iITERATION or "
                             "WORKER@iITERATION+SECONDS (e.g. 3@2.5, 3@i40, 3@i40+0.01)"
                             ) from None
    return out


class FailurePlan:
    """Every planned failure of a run, for ``n_workers`` workers."""

    def __init__(self, n_workers: int, fail: str = "", model: str = "none",
                 lifetime_mean: float = 60.0, seed: int = 0):
        self.N = int(n_workers)
        items = parse_fail(fail)
        for f in items:
            if not 0 <= f.worker < self.N:
                raise UsageError(f"--fail {f.text()}: worker {f.worker} is not one of the "
                                 f"{self.N} workers (0..{self.N - 1})")
        if model not in FAILURE_MODELS:
            raise UsageError(f"--failure-model {model!r}: choose from "
                             f"{', '.join(FAILURE_MODELS)}")
        if model == "exponential":
            rng = np.random.default_rng([int(seed), 0x26FA11])
            life = rng.exponential(float(lifetime_mean), self.N)
            items += [Failure(i, time=float(t)) for i, t in enumerate(life)]
        # a worker dies once: its first failure (by iteration, then by time, per worker)
        first: dict[int, Failure] = {}
        for f in items:
            g = first.get(f.worker)
            if g is None or _earlier(f, g):
                first[f.worker] = f
        self.failures = sorted(first.values(), key=lambda f: (f.iteration < 0, f.iteration,
                                                              f.time, f.worker))

    def __bool__(self) -> bool:
        return bool(self.failures)

    def due(self, iteration: int, t0: float, alive) -> list[tuple[float, int]]:
        """The failures of still ``alive`` workers that may strike in iteration
        ``iteration`` (beginning at run time ``t0``): (seconds since it began, worker),
        earliest first. Iteration-keyed ones strike ``offset`` into their iteration (at 0 in
        a later one: the iteration ended first); timed ones at ``time - t0``, at 0 if that
        time passed between two iterations. Later ones are asked again next time."""
        out = []
        for f in self.failures:
            if not alive[f.worker]:
                continue
            if f.iteration >= 0:
                if f.iteration <= iteration:
                    out.append((f.offset if f.iteration == iteration else 0.0, f.worker))
            else:
                out.append((max(0.0, f.time - t0), f.worker))
        return sorted(out)


def check_failure_options(cfg, scheme_cls, n_workers: int) -> None:
    """``--on-failure continue`` needs a scheme that survives a failure; the failure
    model's workers must exist (UsageError)."""
    if getattr(cfg, "on_failure", "abort") == "continue" and \
            not (getattr(scheme_cls, "elastic", False) or getattr(scheme_cls, "tolerant", False)):
        raise UsageError(f"--on-failure continue: scheme {cfg.scheme} does not survive a "
                         "worker's failure (it declares neither elastic = True nor "
                         "tolerant = True)")
    FailurePlan(n_workers, getattr(cfg, "fail", ""), getattr(cfg, "failure_model", "none"),
                getattr(cfg, "lifetime_mean", 600.0), 0)


def _earlier(a: Failure, b: Failure) -> bool:
    """Is ``a`` certainly no later than ``b``? An iteration-keyed failure is compared with a
    timed one by kind only (iteration-keyed first): the run clock is not known here."""
    if (a.iteration >= 0) != (b.iteration >= 0):
        return a.iteration >= 0
    return (a.iteration, a.time) < (b.iteration, b.time)
