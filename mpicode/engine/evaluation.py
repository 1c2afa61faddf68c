"""When rank 0 evaluates the model (``--eval-every``), a schedule on the run loop (pure).

Rank 0's evaluation reads the whole training set and the test set alone, on one process;
the workers already report the training loss and metric of every broadcast model
(``train_loss``, ``train_metric``). So evaluation is what the workers cannot give: the test
set, and the training loss *after the last step*. ``--eval-every E`` evaluates every E
iterations and at the last one (``1``: every iteration, the behaviour before ``auto``).

``--eval-every auto`` (the default) evaluates the first iteration of the run, measures what
that evaluation cost against what an iteration costs without one over the next
:data:`PROBE` iterations, and then evaluates every

    E = max(1, ceil((1 - B) / B * eval_cost / iteration_cost))

iterations (``B`` = :data:`BUDGET`, 5%), so that evaluation takes at most about 5% of the run's
time; and always the last iteration. On the wall clock both costs are measured (``eval_s``,
and the median of ``t_end - t_start`` of the probe rows). In virtual time (the simulator,
``train --delay-mode virtual``) the rule is deterministic: the iteration cost is the probe
rows' virtual duration and the evaluation cost what the virtual clock charges for one, the
cost model's ``coord_eval_s``; with the zero cost model (the default) evaluation takes no
virtual time, so auto evaluates every iteration (E = 1), as before auto existed; with a
calibrated profile (``--profile``) it chooses the interval the real run would.
"""

from __future__ import annotations

import math

from mpicode.options import _auto_or_int

BUDGET = 0.05   # the fraction of the run's time evaluation may take (auto)
PROBE = 3       # iterations measured, without evaluation, after the first one (auto)


def interval(eval_cost: float, iteration_cost: float, budget: float = BUDGET) -> int:
    """The smallest E whose evaluation share ``eval / (E * iteration + eval)`` is at most
    ``budget`` (1 when evaluation costs nothing, or nothing could be measured)."""
    if not (eval_cost > 0 and math.isfinite(eval_cost)):
        return 1
    if not (iteration_cost > 0 and math.isfinite(iteration_cost)):
        return 1
    return max(1, math.ceil((1.0 - budget) / budget * eval_cost / iteration_cost - 1e-9))


class EvalSchedule:
    """Whether iteration ``it`` is evaluated; ``auto`` learns its interval from the rows.

    Parameters
    ----------
    every : int or "auto"
    model_eval_s : float
        Virtual time only: the modelled cost of one evaluation (see the module docstring);
        None on the wall clock, where the first evaluation is measured.
    """

    def __init__(self, every, model_eval_s: float | None = None):
        every = _auto_or_int(every)
        self.auto = every == "auto"
        self.every: int | None = None if self.auto else every
        self.model_eval_s = model_eval_s
        self.start = 0
        self.eval_cost = math.nan       # auto: seconds of one evaluation (measured/modelled)
        self.iteration_cost = math.nan  # auto: median seconds of a probe iteration
        self._probe: list[float] = []
        self._announce = False
        if self.auto and model_eval_s is not None and not model_eval_s > 0:
            # virtual time, evaluation free on the virtual clock: nothing to probe
            self.every, self.eval_cost, self._announce = 1, 0.0, True

    def bind(self, model_eval_s: float | None) -> None:
        """The clock the run keeps: ``model_eval_s``, the virtual clock's charge for one
        evaluation (the cost model's ``coord_eval_s``), or None on the wall clock, where the
        first evaluation is measured. Called by the evaluation hook at the run's start."""
        self.model_eval_s = model_eval_s
        if self.auto and self.every is None and model_eval_s is not None and \
                not model_eval_s > 0:
            # virtual time, evaluation free on the virtual clock: nothing to probe
            self.every, self.eval_cost, self._announce = 1, 0.0, True

    def begin(self, start: int) -> None:
        """The run (or its resumed part) starts at iteration ``start``; auto probes from
        there unless a checkpoint gave it its interval (:meth:`load_state_dict`)."""
        self.start = int(start)
        self._probe = []

    def state_dict(self) -> dict:
        """Auto's chosen interval for a checkpoint (-1: not chosen yet): a resumed run keeps
        it rather than probing again (and evaluating its first iteration)."""
        return {"eval_every_auto": self.every or -1} if self.auto else {}

    def load_state_dict(self, state: dict) -> None:
        v = state.get("eval_every_auto")
        if self.auto and v is not None and int(v) > 0:
            self.every = int(v)

    def due(self, it: int, last: int) -> bool:
        if it == last:
            return True
        if self.every is None:  # auto, still probing: the first iteration only
            return it == self.start
        return (it + 1) % self.every == 0

    def observe(self, it: int, row: dict) -> int | None:
        """Learn from iteration ``it``'s finished row (``t_start``, ``t_end``, ``eval_s``);
        returns the interval when auto has just chosen it, else None."""
        if self._announce:  # chosen up front: said once
            self._announce = False
            return self.every
        if not self.auto or self.every is not None:
            return None
        if it == self.start:
            self.eval_cost = (self.model_eval_s if self.model_eval_s is not None
                              else float(row.get("eval_s", math.nan)))
            return None
        self._probe.append(float(row["t_end"]) - float(row["t_start"])
                           - float(row.get("eval_s", 0.0) or 0.0))
        if len(self._probe) < PROBE:
            return None
        self._probe.sort()
        self.iteration_cost = self._probe[len(self._probe) // 2]
        self.every = interval(self.eval_cost, self.iteration_cost)
        return self.every

    def describe(self) -> str:
        if not self.auto:
            return f"every {self.every} iterations"
        if self.every is None:
            return "auto (not chosen yet)"
        return f"auto: every {self.every} iterations"
