"""Mini-batches that keep gradient coding exact (``--batch-size B``, ``--epochs E``).

A batch of B rows is stratified over the K micro-partitions: partition ``p`` gives
``B // K + (1 if p < B % K else 0)`` rows (:func:`split`), so the batch has exactly B rows.
Which rows is a function of ``(seed, iteration, p)`` alone (:func:`sample`, PCG64 seeded
with ``SeedSequence([seed, iteration, p])``, drawn without replacement, sorted), so every
worker that computes partition ``p`` in an iteration sums the gradients of the same rows,
and any exact decode of the coded messages is the exact gradient sum of the batch. The
problem divides that sum by B (``Problem.gradient``).

``--epochs E`` runs ``ceil(E * n_train / B)`` iterations (B = n_train for full batch).
"""

from __future__ import annotations

import math

import numpy as np


def split(batch: int, n_partitions: int) -> np.ndarray:
    """Rows each partition gives to a batch of ``batch`` rows (int64, sums to ``batch``)."""
    K = int(n_partitions)
    m = np.full(K, int(batch) // K, np.int64)
    m[: int(batch) % K] += 1
    return m


def sample(seed: int, iteration: int, partition: int, n_rows: int, m: int) -> np.ndarray:
    """``m`` distinct row offsets in ``0..n_rows-1`` (sorted int64) for this partition and
    iteration; the same on every rank."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [int(seed), int(iteration), int(partition)])))
    idx = rng.choice(int(n_rows), size=int(m), replace=False)
    idx.sort()
    return idx.astype(np.int64, copy=False)


def check(batch: int, rows_per_partition) -> str | None:
    """An error message when some partition has fewer rows than its share of the batch."""
    rows = np.asarray(rows_per_partition, np.int64)
    need = split(batch, rows.size)
    bad = np.flatnonzero(need > rows)
    if bad.size:
        p = int(bad[0])
        return (f"--batch-size {batch}: partition {p} has {int(rows[p])} rows but must give "
                f"{int(need[p])} (B/K); use B <= {int(rows.min()) * rows.size}")
    return None


def iterations(cfg, n_train: int) -> int:
    """Iterations a configuration asks for: ``--iterations``, or from ``--epochs``."""
    epochs = getattr(cfg, "epochs", None)
    if epochs is None or cfg.source.get("iterations") not in (None, "default", "resumed"):
        return int(cfg.iterations)
    B = getattr(cfg, "batch_size", None) or n_train
    return max(1, math.ceil(epochs * n_train / B))


def epochs_note(cfg, n_train: int) -> str | None:
    """The one line that says what ``--epochs E`` without ``--batch-size`` means: full-batch
    gradient descent, so an epoch is one iteration (E iterations in all), not E passes of
    mini-batches. None when it does not apply."""
    epochs = getattr(cfg, "epochs", None)
    if epochs is None or getattr(cfg, "batch_size", None) or \
            cfg.source.get("iterations") not in (None, "default", "resumed") or \
            cfg.source.get("epochs") in (None, "default", "resumed"):
        return None
    return (f"note: --epochs {epochs:g} without --batch-size is full-batch gradient descent: "
            f"one iteration per epoch, {iterations(cfg, n_train)} iterations of all "
            f"{n_train} rows (--batch-size B for mini-batches)")


def with_epochs(cfg, n_train: int):
    """``cfg`` with ``iterations`` resolved from ``--epochs`` (unchanged without it)."""
    it = iterations(cfg, n_train)
    return cfg if it == cfg.iterations else cfg.replace(iterations=it)
