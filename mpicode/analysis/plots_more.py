"""More plots of ``mpicode report --plots DIR``: curves per run or per ``--group-by`` group
(mean and 95% CI band across its runs), group bars with CI error bars, straggler scores.

* ``loss_vs_iteration.png``: training loss per iteration (exact schemes give the same curve:
  the series are drawn with distinct line styles, markers and decreasing widths so that
  identical curves stay visible on top of each other).
* ``metric_vs_time.png``: test accuracy (test loss when the run has no accuracy) against
  wall time.
* ``groups.png`` (with ``--group-by``): per group, mean and 95% CI of the mean iteration
  time, time to target, ``vs_oracle`` and final loss.
* ``straggler_scores.png``: per worker, its straggler score (``mpicode.analysis.whatif``), and
  per run ``vs_oracle`` when the logs have ``/iterations/oracle_s``.
"""

from __future__ import annotations

import math

import numpy as np

import mpicode.analysis as analysis
from mpicode.analysis import whatif
from mpicode.analysis.plots import _figure, _save, label, legend, style
from mpicode.stats import mean_ci, t975


def band(ys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) per position of equally long series (95% Student-t CI of the mean;
    the interval is the mean itself where fewer than two series have a finite value)."""
    a = np.vstack(ys).astype(float)
    ok = np.isfinite(a)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.nansum(np.where(ok, a, 0), axis=0) / n
        var = np.nansum(np.where(ok, (a - m) ** 2, 0), axis=0) / (n - 1)
        h = np.array([t975(int(k) - 1) if k > 1 else 0.0 for k in n]) * np.sqrt(var / n)
    h = np.where(n > 1, h, 0.0)
    return m, m - h, m + h


def _field(run: dict, name: str) -> np.ndarray | None:
    if name == "loss" and "loss" in run["iterations"]:  # evaluated, else the workers' loss
        return analysis.loss_after_step(run)
    v = run["iterations"].get(name)
    return None if v is None else np.asarray(v, float)


def _curves(ax, sets, x_name: str | None, y_name: str, log: bool) -> int:
    """One curve per set: a single run as is, a group as the mean with a CI band. Returns
    how many curves were drawn."""
    drawn = 0
    for i, (name, members) in enumerate(sets):
        pairs = [(_field(r, x_name) if x_name else
                  np.asarray(r["iterations"].get("iteration", np.arange(r["n"])), float),
                  _field(r, y_name)) for r in members]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None and len(y)]
        if not pairs:
            continue
        n = min(len(y) for _, y in pairs)
        x = band([p[0][:n] for p in pairs])[0]
        m, lo, hi = band([p[1][:n] for p in pairs])
        ok = np.isfinite(x) & np.isfinite(m) & (m > 0 if log else True)
        st = style(i, len(sets), ok.sum())
        label_ = name if len(pairs) == 1 else f"{name} (mean of {len(pairs)}, 95% CI)"
        line, = ax.plot(x[ok], m[ok], label=label_, **st)
        if len(pairs) > 1:
            ax.fill_between(x[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.2, lw=0)
        drawn += 1
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both" if log else "major")
    return drawn


def run_sets(runs: list[dict], groups) -> list[tuple[str, list[dict]]]:
    return groups if groups else [(label(r), [r]) for r in runs]


def loss_vs_iteration(runs, path, groups=None, log: bool = False, target_loss=None) -> str:
    fig, (ax,) = _figure()
    _curves(ax, run_sets(runs, groups), None, "loss", log)
    if target_loss is not None:
        ax.axhline(target_loss, color="0.4", ls=":", lw=1, label=f"target {target_loss:g}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss" + (" (log scale)" if log else ""))
    ax.set_title("Loss per iteration (exact schemes share one curve)")
    legend(ax, len(groups or runs))
    return _save(fig, path)


def metric_vs_time(runs, path, groups=None) -> str:
    acc = any("accuracy" in r["iterations"] and np.isfinite(r["iterations"]["accuracy"]).any()
              for r in runs)
    name = "accuracy" if acc else "test_loss"
    fig, (ax,) = _figure()
    drawn = _curves(ax, run_sets(runs, groups), "t_end", name, False)
    ax.set_xlabel("wall time since training began (s)")
    ax.set_ylabel("test accuracy" if acc else "test loss")
    ax.set_title(f"Test {'accuracy' if acc else 'loss'} against wall time")
    if drawn:
        legend(ax, drawn)
    else:
        ax.text(0.5, 0.5, "no run logged a test metric", ha="center", va="center",
                transform=ax.transAxes)
    return _save(fig, path)


GROUP_BARS = [("mean_iter_s", "mean iteration time (s)"),
              ("time_to_target_s", "time to target loss (s)"),
              ("vs_oracle", "slowdown vs clairvoyant oracle"), ("final_loss", "final loss")]


def group_bars(groups, target_loss, path) -> str:
    """Per group and metric: the mean with its 95% CI as an error bar."""
    rows = {name: [analysis.summary(r, target_loss) for r in members]
            for name, members in groups}
    for name, members in groups:
        for row, r in zip(rows[name], members, strict=True):
            row.setdefault("vs_oracle", whatif.vs_oracle(r))
    fig, axes = _figure(w=9.0, h=2.2 * len(GROUP_BARS) + 0.6, rows=len(GROUP_BARS))
    names = [n for n, _ in groups]
    for ax, (key, title) in zip(axes, GROUP_BARS, strict=True):
        stats = [mean_ci([row.get(key) if row.get(key) is not None else math.nan
                          for row in rows[n]]) for n in names]
        m = np.array([s[0] for s in stats])
        err = np.array([[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]])
        if not np.isfinite(m).any():
            ax.text(0.5, 0.5, f"{key}: no values" + (" (no --target-loss)" if key ==
                    "time_to_target_s" and target_loss is None else ""),
                    ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
        else:
            ax.barh(range(len(names)), np.nan_to_num(m), xerr=np.nan_to_num(err), capsize=4,
                    color="#3b75af", alpha=0.8)
            ax.set_yticks(range(len(names)), names, fontsize="small")
            ax.invert_yaxis()
        ax.set_title(f"{title}: mean and 95% CI", fontsize="medium")
        ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def _score_bars(ax, runs, scores) -> None:
    N = max(len(s) for s in scores)
    width = 0.8 / len(runs)
    for i, (r, s) in enumerate(zip(runs, scores, strict=True)):
        x = np.arange(len(s)) + (i - (len(runs) - 1) / 2) * width
        ax.bar(x, [w["score"] for w in s], width=width, label=label(r), alpha=0.85)
    ax.axhline(1.0, color="0.3", ls="--", lw=0.8, label="iteration median")
    ax.set_xticks(range(N), [str(w) for w in range(N)] if N <= 32 else
                  [str(w) if w % max(1, N // 16) == 0 else "" for w in range(N)])
    ax.set_xlabel("worker (rank = worker + 1)")
    ax.set_ylabel("straggler score\n(time / iteration median)")
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))  # off the bars


def _score_map(fig, ax, runs, scores) -> None:
    N = max(len(s) for s in scores)
    a = np.full((len(runs), N), np.nan)
    for i, s in enumerate(scores):
        a[i, :len(s)] = [w["score"] for w in s]
    im = ax.imshow(a, aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="straggler score (time / iteration median)")
    ax.set_yticks(range(len(runs)), [label(r) for r in runs], fontsize="x-small")
    step = max(1, N // 16)
    ax.set_xticks(range(0, N, step))
    ax.set_xlabel("worker (rank = worker + 1)")
    if N <= 16 and len(runs) <= 16:  # small enough to print the numbers
        for (i, w), v in np.ndenumerate(a):
            if np.isfinite(v):
                ax.text(w, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < np.nanmax(a) * 0.6 else "black")


def straggler_scores(runs, path) -> str:
    """Per worker its straggler score (bars, or a runs x workers map beyond 4 runs); below,
    each run's slowdown against the clairvoyant oracle (or why there is none)."""
    scores = [whatif.straggler_scores(r) for r in runs]
    keep = [(r, s) for r, s in zip(runs, scores, strict=True) if s]
    fig, (ax, ao) = _figure(w=10.0, h=3.5 + 0.25 * max(len(runs), 6), rows=2)
    if not keep:
        ax.text(0.5, 0.5, "no per-worker times in these runs", ha="center", va="center",
                transform=ax.transAxes)
    elif len(keep) <= 4:
        _score_bars(ax, *zip(*keep, strict=True))
    else:
        _score_map(fig, ax, *zip(*keep, strict=True))
    ax.set_title("Straggler score per worker: its mean time per partition over the "
                 "iteration's median", fontsize="medium")
    vs = np.array([whatif.vs_oracle(r) for r in runs])
    if np.isfinite(vs).any():
        ao.barh(range(len(runs)), np.nan_to_num(vs), color="#ef8636", alpha=0.85)
        ao.axvline(1.0, color="0.3", ls="--", lw=0.8)
        ao.set_yticks(range(len(runs)), [label(r) for r in runs], fontsize="x-small")
        ao.invert_yaxis()
        ao.set_xlabel("mean iteration time / mean oracle time (1 = clairvoyant oracle)")
    else:
        ao.text(0.5, 0.5, "no /iterations/oracle_s in these runs: no vs_oracle", ha="center",
                va="center", transform=ao.transAxes)
        ao.set_yticks([])
        ao.set_xticks([])
    ao.set_title("Slowdown against the clairvoyant oracle (vs_oracle)", fontsize="medium")
    return _save(fig, path)
