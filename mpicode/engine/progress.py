"""Progress on stderr for ``train`` and ``simulate`` (``--progress auto|bar|lines|none``).

Under ``mpiexec`` rank 0's stderr is a pipe to the launcher, never a terminal, so ``auto``
prints a compact line every few seconds there::

    mpicode: it 120/500  loss 0.3481  acc 0.836  0.012 s/it  ETA 4.6 s

and a tqdm bar on a terminal. ``s/it`` is wall time per iteration since the previous line
(everything rank 0 does, not only the logged iteration time); ETA = remaining iterations x
that rate. ``--quiet`` implies ``none``.
"""

from __future__ import annotations

import math
import sys
import time

MODES = ("auto", "bar", "lines", "none")


class NoProgress:
    def update(self, row: dict) -> None:
        pass

    def heartbeat(self, it: int, events: int) -> None:
        pass

    def close(self) -> None:
        pass


def _metric(row: dict) -> tuple[str, float] | None:
    for key, label in (("accuracy", "acc"), ("rmse", "rmse"), ("train_accuracy", "train_acc")):
        v = row.get(key)
        if v is not None and math.isfinite(v):
            return label, float(v)
    return None


class LineProgress:
    """One line every ``interval`` seconds of ``clock`` (and a last one at ``close`` once any
    was printed). The loss and metric shown are the latest finite ones (``--eval-every``); the
loss is rank 0's evaluation, else the workers' ``train_loss``.
    ``desc`` is not printed: the line stays the same for every run."""

    def __init__(self, total: int, desc: str = "", initial: int = 0, *, stream=None,
                 clock=time.monotonic, interval: float = 3.0):
        self.total, self.desc, self.n = int(total), desc, int(initial)
        self.stream = stream if stream is not None else sys.stderr
        self.clock, self.interval = clock, float(interval)
        self.t_last = clock()
        self.t_beat = -math.inf  # the last heartbeat line
        self.n_last = self.n
        self.loss = math.nan
        self.metric: tuple[str, float] | None = None
        self.printed = 0

    def update(self, row: dict) -> None:
        self.n += 1
        loss = row.get("loss")
        if loss is None or not math.isfinite(loss):  # not evaluated: the workers' loss
            loss = row.get("train_loss")
        if loss is not None and math.isfinite(loss):
            self.loss = float(loss)
        self.metric = _metric(row) or self.metric
        if self.clock() - self.t_last >= self.interval:
            self._emit()

    def line(self, rate: float) -> str:
        parts = [f"it {self.n}/{self.total}"]
        if math.isfinite(self.loss):
            parts.append(f"loss {self.loss:.4f}")
        if self.metric is not None:
            parts.append(f"{self.metric[0]} {self.metric[1]:.3f}")
        if math.isfinite(rate):
            eta = max(0, self.total - self.n) * rate
            parts += [f"{rate:.3g} s/it", f"ETA {eta:.1f} s" if eta < 600 else
                      f"ETA {eta / 60:.1f} min"]
        return "mpicode: " + "  ".join(parts)

    def _emit(self) -> None:
        now = self.clock()
        done = self.n - self.n_last
        rate = (now - self.t_last) / done if done > 0 else math.nan
        print(self.line(rate), file=self.stream, flush=True)
        self.t_last, self.n_last = now, self.n
        self.printed += 1

    def close(self) -> None:
        if self.printed and self.n != self.n_last:
            self._emit()

    def heartbeat(self, it: int, events: int) -> None:
        """Called from inside a long iteration (every few thousand events of a simulated
        one): a line once the interval has passed since the last, so that a run whose
        single iteration takes minutes is not silent."""
        now = self.clock()
        if now - max(self.t_last, self.t_beat) >= self.interval:
            print(f"mpicode: it {self.n}/{self.total}  iteration {it} still running "
                  f"({events} events so far)", file=self.stream, flush=True)
            self.t_beat = now  # (the rate of the next line still counts from t_last)


class BarProgress:
    """A tqdm bar with the latest loss, coverage and iteration time."""

    def __init__(self, total: int, desc: str, initial: int = 0, stream=None):
        from tqdm import tqdm
        self.bar = tqdm(total=total, desc=desc, unit="it", initial=initial,
                        file=stream if stream is not None else sys.stderr)

    def update(self, row: dict) -> None:
        self.bar.update(1)
        it_s = row.get("t_end", math.nan) - row.get("t_start", math.nan)
        loss = row.get("loss", math.nan)
        if not math.isfinite(loss):  # not evaluated: the workers' loss
            loss = row.get("train_loss", math.nan)
        self.bar.set_postfix(loss=f"{loss:.4g}",
                             cov=f"{row.get('coverage', math.nan):.2f}", it_s=f"{it_s:.3f}",
                             refresh=False)

    def close(self) -> None:
        self.bar.close()

    def heartbeat(self, it: int, events: int) -> None:
        self.bar.set_postfix_str(f"iteration {it}: {events} events", refresh=True)


def make_progress(mode: str, total: int, desc: str, initial: int = 0, *, stream=None,
                  clock=time.monotonic, interval: float = 3.0):
    """The progress display for ``mode`` (one of :data:`MODES`): an object with
    ``update(row)`` (once per iteration, with its log row) and ``close()``."""
    stream = stream if stream is not None else sys.stderr
    if mode == "auto":
        mode = "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
    if mode == "bar":
        return BarProgress(total, desc, initial, stream)
    if mode == "lines":
        return LineProgress(total, desc, initial, stream=stream, clock=clock,
                            interval=interval)
    if mode == "none":
        return NoProgress()
    raise ValueError(f"unknown progress mode {mode!r} (choose from {', '.join(MODES)})")
