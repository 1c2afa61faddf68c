"""Per-iteration series derived from a run's rows (the dict ``analysis.read_run`` returns):
what ``report``, the plots and the experiments read instead of the raw columns where rank 0's
evaluation (``--eval-every``) would otherwise change the answer.

* :func:`loss_after_step`: the training loss of the model each row's step produced, rank 0's
  evaluation where it ran, else the workers' ``train_loss`` of the next row (issue 25);
* :func:`iteration_seconds`: ``t_end - t_start`` less rank 0's evaluation (``eval_s``).
"""

from __future__ import annotations

import json

import numpy as np


def _batch_size(run: dict):
    try:
        return json.loads(run["attrs"].get("config", "{}")).get("batch_size")
    except (json.JSONDecodeError, AttributeError):
        return None


def loss_after_step(run: dict) -> np.ndarray:
    """Per row, the training objective of the model the row's step produced: rank 0's
    evaluation (``loss``) where one ran, else the workers' ``train_loss`` of the next row
    (the same model, decoded from their loss sums: exact for an exact scheme, the decoded
    estimate when that row's ``coverage`` < 1). NaN where neither exists (the row after the
    last). With mini-batches (``--batch-size``) ``train_loss`` is a sampled batch's loss,
    not the objective: only the evaluated rows count."""
    it, n = run["iterations"], run["n"]
    loss = np.asarray(it.get("loss", np.full(n, np.nan)), float).copy()
    nxt = it.get("train_loss")
    if nxt is None or n < 2 or _batch_size(run) is not None:
        return loss
    fill = ~np.isfinite(loss[:-1])
    loss[:-1][fill] = np.asarray(nxt, float)[1:][fill]
    return loss


def iteration_seconds(run: dict) -> np.ndarray:
    """Per row, ``t_end - t_start`` less rank 0's evaluation (``eval_s``, 0 when absent):
    the iteration's own time, the same whatever ``--eval-every`` (the basis of
    ``mean_iter_s``, ``p95_iter_s`` and ``vs_oracle``; ``total_s`` stays the wall time)."""
    it, n = run["iterations"], run["n"]
    nan = np.full(n, np.nan)
    dur = np.asarray(it.get("t_end", nan), float) - np.asarray(it.get("t_start", nan), float)
    ev = np.nan_to_num(np.asarray(it.get("eval_s", np.zeros(n)), float))
    return dur - ev
