"""Progress on stderr for ``train`` and ``simulate`` (``--progress auto|bar|lines|none``).

Under ``mpiexec`` rank 0's stderr is a pipe to the launcher, never a terminal, so ``auto``
prints a compact line every few seconds there::

    mpicode: it 120/500  loss 0.3481  acc 0.836  0.012 s/it  ETA 4.6 s

and a tqdm bar on a terminal. ``s/it`` is wall time per iteration since the previous line
(everything rank 0 does, not only the logged iteration time); ETA = remaining iterations x
that rate. ``--quiet`` implies ``none``.

An iteration longer than the interval (a 20,000-worker simulation, a replayed trace of long
steps) would print nothing until it ends: the loop calls ``heartbeat(t)`` while it runs
(``t``: the iteration's own time so far, virtual in the simulator), and a line comes every
interval from the first iteration on::

    mpicode: it 0/500 running  12.0 s of wall time so far (virtual 3.41e+04 s)

``heartbeat`` costs one clock read when no line is due (call it every event, or every few).
"""

from __future__ import annotations

import math
import sys
import time

MODES = ("auto", "bar", "lines", "none")


class NoProgress:
    def update(self, row: dict) -> None:
        pass

    def heartbeat(self, t: float | None = None) -> None:
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
    was printed). The loss and metric shown are the latest finite ones (``--eval-every``).
    ``desc`` is not printed: the line stays the same for every run."""

    def __init__(self, total: int, desc: str = "", initial: int = 0, *, stream=None,
                 clock=time.monotonic, interval: float = 3.0):
        self.total, self.desc, self.n = int(total), desc, int(initial)
        self.stream = stream if stream is not None else sys.stderr
        self.clock, self.interval = clock, float(interval)
        self.t_last = self.t_rate = clock()  # t_rate: where s/it counts from (a heartbeat
        self.n_last = self.n                  # line moves t_last only)
        self.loss = math.nan
        self.metric: tuple[str, float] | None = None
        self.printed = 0
        self.t_iter = self.t_last  # when the running iteration began (the last update)

    def heartbeat(self, t: float | None = None) -> None:
        """A line every ``interval`` even while one iteration runs (``t``: its time so far,
        virtual in the simulator, shown when given)."""
        now = self.clock()
        if now - self.t_last < self.interval:
            return
        virtual = f" (virtual {t:.3g} s)" if t is not None and math.isfinite(t) else ""
        print(f"mpicode: it {self.n}/{self.total} running  {now - self.t_iter:.1f} s of wall "
              f"time so far{virtual}", file=self.stream, flush=True)
        self.t_last = now  # the next line one interval later; s/it still counts from n_last
        self.printed += 1

    def update(self, row: dict) -> None:
        self.t_iter = self.clock()
        self.n += 1
        loss = row.get("loss")
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
        rate = (now - self.t_rate) / done if done > 0 else math.nan
        print(self.line(rate), file=self.stream, flush=True)
        self.t_last, self.t_rate, self.n_last = now, now, self.n
        self.printed += 1

    def close(self) -> None:
        if self.printed and self.n != self.n_last:
            self._emit()


class BarProgress:
    """A tqdm bar with the latest loss, coverage and iteration time."""

    def __init__(self, total: int, desc: str, initial: int = 0, stream=None):
        from tqdm import tqdm
        self.bar = tqdm(total=total, desc=desc, unit="it", initial=initial,
                        file=stream if stream is not None else sys.stderr)

    def heartbeat(self, t: float | None = None) -> None:
        """Redraw the bar (its elapsed time) at most twice a second while an iteration runs."""
        now = time.monotonic()
        if now - getattr(self, "_t_beat", 0.0) >= 0.5:
            self._t_beat = now
            self.bar.refresh()

    def update(self, row: dict) -> None:
        self.bar.update(1)
        it_s = row.get("t_end", math.nan) - row.get("t_start", math.nan)
        self.bar.set_postfix(loss=f"{row.get('loss', math.nan):.4g}",
                             cov=f"{row.get('coverage', math.nan):.2f}", it_s=f"{it_s:.3f}",
                             refresh=False)

    def close(self) -> None:
        self.bar.close()


def make_progress(mode: str, total: int, desc: str, initial: int = 0, *, stream=None,
                  clock=time.monotonic, interval: float = 3.0):
    """The progress display for ``mode`` (one of :data:`MODES`): an object with
    ``update(row)`` (once per iteration, with its log row), ``heartbeat(t)`` (any time while
    an iteration runs) and ``close()``."""
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
