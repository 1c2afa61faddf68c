"""PNG plots of runs (``mpicode report --plots DIR``), with matplotlib's Agg canvas.

matplotlib is optional (``pip install 'mpicode[plot]'``); without it, asking for plots is a
usage error that says what to install. No pyplot: figures are built on an Agg canvas
directly, so nothing here touches a display or global state. Curves are per run, or per
``--group-by`` group (mean and 95% CI band across its runs):

* ``loss_vs_time.png``, ``loss_vs_iteration.png`` (exact schemes give the same curve: the
  series are drawn with distinct line styles, markers and decreasing widths so that identical
  curves stay visible on top of each other), ``metric_vs_time.png`` (test accuracy, or test
  loss when the run has no accuracy), ``load_coverage.png``;
* ``groups.png`` (with ``--group-by``): per group, mean and 95% CI of the mean iteration
  time, time to target, ``vs_oracle`` and final loss;
* ``straggler_scores.png``: per worker, its straggler score (``mpicode.analysis.whatif``), and
  per run ``vs_oracle`` when the logs have ``/iterations/oracle_s``;
* ``gantt_<run>_<A>-<B>.png`` and ``backlog_<run>.png``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import mpicode.analysis as analysis
from mpicode.analysis import slowdown, whatif
from mpicode.analysis.table import distinguishing
from mpicode.errors import UsageError, WriteError
from mpicode.io import safefile
from mpicode.stats import mean_ci, t975

STAGE_COLORS = {1: "#3b75af", 2: "#ef8636"}
CANCELLED = "#c44e52"
IDLE = "#e6e6e6"


def _mpl():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("--plots needs matplotlib, which is not installed: "
                         "pip install 'mpicode[plot]' (or pip install matplotlib)") from None
    return Figure, FigureCanvasAgg


def _figure(w=8.0, h=4.5, rows=1, sharex=False):
    Figure, Canvas = _mpl()
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    Canvas(fig)
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, axes


def _save(fig, path: Path) -> str:
    """The PNG by the safe path (:func:`mpicode.io.safefile.writing`): a symlink in the
    output folder is replaced, never written through; a full disk leaves no half PNG."""
    with safefile.writing(path) as f:
        fig.savefig(f, format="png")
    return str(path)


def label(run: dict) -> str:
    """What the run is, without its file name: scheme[, scheduler], stragglers, N."""
    a = run["attrs"]
    extra = "" if str(a.get("scheduler", "none")) in ("none", "?") else f", {a['scheduler']}"
    return f"{a.get('scheme', '?')}{extra}, {a.get('stragglers', '?')}, N={a.get('n_workers', '?')}"


def _facts(run: dict) -> list[tuple[str, str]]:
    a = run["attrs"]
    seed = analysis.config(run).get("seed", a.get("seed"))
    return [("scheme", str(a.get("scheme", "?"))),
            ("scheduler", str(a.get("scheduler", "none"))),
            ("stragglers", str(a.get("stragglers", "?"))),
            ("N", f"N={a.get('n_workers', '?')}"),
            ("seed", f"seed {seed}" if seed is not None else "")]


def run_labels(runs: list[dict]) -> list[str]:
    """Short legend labels that tell the runs apart: the facts (scheme, scheduler,
    stragglers, N, seed) that differ between them, scheme names alone when only the scheme
    differs; the distinguishing part of the file names when the facts are all equal."""
    facts = [_facts(r) for r in runs]
    keep = [j for j in range(len(facts[0]) if facts else 0)
            if len({f[j][1] for f in facts}) > 1]
    out = [", ".join(f[j][1] for j in keep if f[j][1]) for f in facts]
    if len(runs) == 1:
        return [label(runs[0])]
    if not keep or len(set(out)) < len(out):
        stems = [Path(r["path"]).name.removesuffix(".part").removesuffix(".h5") for r in runs]
        names, _ = distinguishing(stems, 20)
        out = [f"{o}, {n}" if o else n for o, n in zip(out, names, strict=True)]
    return out


def group_label(keys: list[str], values: tuple) -> str:
    """A group's legend label: its values (``two-stage``, ``two-stage, bimodal``), not
    ``scheme=two-stage``; a key name only where the value alone says nothing (a number)."""
    return ", ".join(f"{k}={v}" if isinstance(v, (int, float)) and not isinstance(v, bool)
                     else str(v) for k, v in zip(keys, values, strict=True))


LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "x", "+", "*"]


def style(i: int, n: int, points: int) -> dict:
    """Line style of series ``i`` of ``n``: series that coincide (exact schemes, equal
    coverage) stay visible: the first is the widest and the most transparent, later ones
    are thinner, dashed differently, with markers at offsets that do not overlap."""
    every = max(1, points // 12, min(n, points // 2))  # a marker slot for every series
    return {"ls": LINESTYLES[i % len(LINESTYLES)], "lw": 1.2 + 2.4 * (n - 1 - i) / max(1, n - 1),
            "alpha": 0.55 + 0.4 * i / max(1, n - 1), "marker": MARKERS[i % len(MARKERS)],
            "markersize": 4, "markevery": (i % every, every), "fillstyle": "none"}


def legend(ax, n: int, grouped: bool = False) -> None:
    """Inside the axes for a few series, outside on the right (hiding no data) for more.
    ``grouped``: the curves are group means, the bands their 95% CIs (said once, in the
    legend's title, not on every label)."""
    title = "group mean, 95% CI band" if grouped else None
    if n > 3:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0), title=title,
                  title_fontsize="x-small")
    else:
        ax.legend(fontsize="small", title=title, title_fontsize="small")


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
        label_ = name if len(pairs) == 1 else f"{name} (n={len(pairs)})"
        line, = ax.plot(x[ok], m[ok], label=label_, **st)
        if len(pairs) > 1:
            ax.fill_between(x[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.2, lw=0)
        drawn += 1
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both" if log else "major")
    return drawn


def run_sets(runs: list[dict], groups) -> list[tuple[str, list[dict]]]:
    """(label, runs) per curve: the ``--group-by`` groups, or one set per run."""
    return groups if groups else list(zip(run_labels(runs), [[r] for r in runs], strict=True))


def loss_vs_iteration(runs, path, groups=None, log: bool = False, target_loss=None) -> str:
    return _loss_figure(runs, path, groups, log, target_loss, None, "iteration",
                        "Loss per iteration (exact schemes share one curve)")


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
        legend(ax, drawn, bool(groups))
    else:
        ax.text(0.5, 0.5, "no run logged a test metric", ha="center", va="center",
                transform=ax.transAxes)
    return _save(fig, path)


GROUP_BARS = [("mean_iter_s", "mean iteration time (s)"),
              ("time_to_target_s", "time to target loss (s)"),
              ("vs_oracle", "slowdown vs clairvoyant oracle"), ("final_loss", "final loss")]


def _equal(m: np.ndarray) -> bool:
    """Every group has the same (finite) mean: the panel would compare nothing (the final
    loss of exact schemes, which all compute the same gradient)."""
    f = m[np.isfinite(m)]
    return len(m) > 1 and len(f) == len(m) and bool(np.all(np.abs(f - f[0]) <= 1e-9 *
                                                          max(1.0, abs(f[0]))))


def group_bars(groups, target_loss, path) -> str:
    """Per group and metric: the mean with its 95% CI as an error bar. A metric equal in
    every group (exact schemes' final loss) gets no panel, a line at the bottom says so."""
    rows = {name: [analysis.summary(r, target_loss) for r in members]
            for name, members in groups}
    for name, members in groups:
        for row, r in zip(rows[name], members, strict=True):
            row.setdefault("vs_oracle", whatif.vs_oracle(r))
    names = [n for n, _ in groups]
    panels, same = [], []
    for key, title in GROUP_BARS:
        stats = [mean_ci([row.get(key) if row.get(key) is not None else math.nan
                          for row in rows[n]]) for n in names]
        m = np.array([st[0] for st in stats])
        if _equal(m):
            same.append(f"{title.split(' (')[0]} {m[0]:.4g}")
        else:
            panels.append((key, title, stats, m))
    h_panel = 0.9 + 0.32 * len(names)
    fig, axes = _figure(w=8.0, h=h_panel * max(1, len(panels)) + 0.5, rows=max(1, len(panels)))
    for ax, (key, title, stats, m) in zip(axes, panels, strict=False):
        err = np.array([[st[0] - st[1] for st in stats], [st[2] - st[0] for st in stats]])
        if not np.isfinite(m).any():
            ax.text(0.5, 0.5, f"{title}: no values" + (" (no --target-loss)" if key ==
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
    if same and not panels:  # nothing differs: say so on the one (empty) panel
        axes[0].set_axis_off()
        axes[0].text(0.5, 0.5, "equal in every group:\n" + "\n".join(same), ha="center",
                     va="center", transform=axes[0].transAxes)
    elif same:
        import textwrap
        fig.supxlabel("\n".join(textwrap.wrap("equal in every group (no panel): "
                                               + "; ".join(same), 100)),
                      fontsize="small", color="0.3")
    return _save(fig, path)


def _scores(sets) -> list[tuple[str, np.ndarray]]:
    """(label, per-worker score) per set: a run's scores, or a group's mean per worker."""
    out = []
    for name, members in sets:
        per = [np.array([w["score"] for w in whatif.straggler_scores(r)], float)
               for r in members]
        per = [p for p in per if len(p)]
        if per:
            n = max(len(p) for p in per)
            a = np.full((len(per), n), np.nan)
            for i, p in enumerate(per):
                a[i, :len(p)] = p
            with np.errstate(invalid="ignore"):
                out.append((name, np.nanmean(a, axis=0)))
    return out


def _score_bars(ax, scored) -> None:
    N = max(len(s) for _, s in scored)
    width = 0.8 / len(scored)
    for i, (name, s) in enumerate(scored):
        x = np.arange(len(s)) + (i - (len(scored) - 1) / 2) * width
        ax.bar(x, s, width=width, label=name, alpha=0.85)
    ax.axhline(1.0, color="0.3", ls="--", lw=0.8, label="iteration median")
    ax.set_xticks(range(N), [str(w) for w in range(N)] if N <= 32 else
                  [str(w) if w % max(1, N // 16) == 0 else "" for w in range(N)])
    ax.set_xlabel("worker (rank = worker + 1)")
    ax.set_ylabel("straggler score")
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))  # off the bars


def _score_map(fig, ax, scored) -> None:
    N = max(len(s) for _, s in scored)
    a = np.full((len(scored), N), np.nan)
    for i, (_, s) in enumerate(scored):
        a[i, :len(s)] = s
    im = ax.imshow(a, aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="straggler score")
    ax.set_yticks(range(len(scored)), [n for n, _ in scored], fontsize="x-small")
    step = max(1, N // 16)
    ax.set_xticks(range(0, N, step))
    ax.set_xlabel("worker (rank = worker + 1)")
    if N <= 16 and len(scored) <= 16:  # small enough to print the numbers
        for (i, w), v in np.ndenumerate(a):
            if np.isfinite(v):
                ax.text(w, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < np.nanmax(a) * 0.6 else "black")


def straggler_scores(runs, path, groups=None) -> str:
    """Per worker its straggler score, its mean time per partition over its iteration's
    median (bars, or a map beyond 4 runs or groups; ``groups``: the group's mean per
    worker); below, the slowdown against the clairvoyant oracle per run (per group: mean
    and 95% CI), or why there is none."""
    sets = run_sets(runs, groups)
    scored = _scores(sets)
    fig, (ax, ao) = _figure(w=10.0, h=3.5 + 0.25 * max(len(sets), 6), rows=2)
    if not scored:
        ax.text(0.5, 0.5, "no per-worker times in these runs", ha="center", va="center",
                transform=ax.transAxes)
    elif len(scored) <= 4:
        _score_bars(ax, scored)
    else:
        _score_map(fig, ax, scored)
    ax.set_title("Straggler score per worker (its time per partition / the iteration's "
                 "median)" + (": group means" if groups else ""), fontsize="medium")
    vs = [mean_ci([whatif.vs_oracle(r) for r in members]) for _, members in sets]
    m = np.array([v[0] for v in vs])
    if np.isfinite(m).any():
        err = np.nan_to_num(np.array([[v[0] - v[1] for v in vs], [v[2] - v[0] for v in vs]]))
        ao.barh(range(len(sets)), np.nan_to_num(m), xerr=err if groups else None, capsize=4,
                color="#ef8636", alpha=0.85)
        ao.axvline(1.0, color="0.3", ls="--", lw=0.8)
        ao.set_yticks(range(len(sets)), [n for n, _ in sets], fontsize="x-small")
        ao.invert_yaxis()
        ao.set_xlabel("mean iteration time / mean oracle time (1: the clairvoyant oracle)")
    else:
        ao.text(0.5, 0.5, "no /iterations/oracle_s in these runs: no vs_oracle", ha="center",
                va="center", transform=ao.transAxes)
        ao.set_yticks([])
        ao.set_xticks([])
    ao.set_title("Slowdown against the clairvoyant oracle (vs_oracle)"
                 + (": mean and 95% CI" if groups else ""), fontsize="medium")
    return _save(fig, path)


def loss_vs_time(runs: list[dict], path: Path, target_loss: float | None = None,
                 groups=None, log: bool = False) -> str:
    """Training loss against wall time (end of each iteration), every run (or ``groups``:
    mean and 95% CI band per group) on one figure; ``log``: log-scale loss axis."""
    return _loss_figure(runs, path, groups, log, target_loss, "t_end",
                        "wall time since training began (s)", "Loss against wall time")


def _loss_figure(runs, path, groups, log, target_loss, x, xlabel: str, title: str) -> str:
    """The training loss against ``x`` (a column, None: the iteration), with the target."""
    fig, (ax,) = _figure()
    _curves(ax, run_sets(runs, groups), x, "loss", log)
    if target_loss is not None:
        ax.axhline(target_loss, color="0.4", ls=":", lw=1, label=f"target {target_loss:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training loss" + (" (log scale)" if log else ""))
    ax.set_title(title)
    legend(ax, len(groups or runs), bool(groups))
    return _save(fig, path)


def load_coverage(runs: list[dict], path: Path, groups=None) -> str:
    """Computation load and coverage per iteration, every run (or ``groups``: the group's
    mean with its 95% CI band)."""
    fig, (ax1, ax2) = _figure(h=6.0, rows=2, sharex=True)
    sets = run_sets(runs, groups)
    _curves(ax1, sets, None, "load", False)
    _curves(ax2, sets, None, "coverage", False)
    ax1.set_ylabel("load (partitions started / K)")
    ax2.set_ylabel("coverage (fraction decoded)")
    ax2.set_xlabel("iteration")
    ax2.set_ylim(-0.02, 1.05)
    ax1.set_ylim(bottom=0)
    ax1.set_title("Computation load and coverage per iteration")
    if ax1.get_lines():
        legend(ax1, len(sets), bool(groups))
    return _save(fig, path)


def _gantt_tasks(ax, run: dict, lo: int, hi: int, h: float) -> set[str]:
    """The task bars of iterations lo..hi-1; returns the kinds drawn ("stage1", "stage2",
    "cancelled", "unused")."""
    it, tk = run["iterations"], run["tasks"]
    iters = it.get("iteration", np.arange(run["n"]))
    start_of = dict(zip(iters.tolist(), it["t_start"].tolist(), strict=True))
    end_of = dict(zip(iters.tolist(), it["t_end"].tolist(), strict=True))
    kinds: set[str] = set()
    if not tk:
        return kinds
    for j in np.flatnonzero((tk["iteration"] >= lo) & (tk["iteration"] < hi)):
        i = int(tk["iteration"][j])
        if i not in start_of:
            continue
        t0 = start_of[i] + tk["t_dispatch"][j]
        t1 = start_of[i] + tk["t_done"][j] if np.isfinite(tk["t_done"][j]) else end_of[i]
        cancelled = "cancelled" in tk and bool(tk["cancelled"][j])
        stage = int(tk["stage"][j]) if "stage" in tk else 1
        unused = "used" in tk and not tk["used"][j] and not cancelled
        kinds.add("cancelled" if cancelled else f"stage{stage}")
        if unused:
            kinds.add("unused")
        ax.broken_barh([(t0, max(t1 - t0, 1e-6))], (tk["worker"][j] - h / 2, h),
                       facecolors=CANCELLED if cancelled else STAGE_COLORS.get(stage, "C2"),
                       edgecolor="white" if not (cancelled or unused) else "black",
                       linewidth=0.5, hatch="///" if cancelled else
                       ("..." if unused else None), alpha=1.0)  # overlaps: no new shades
    return kinds


def _gantt_legend(kinds: set[str], staged: bool, decodable: bool) -> list:
    """Legend entries of the kinds present only; "stage 1/2" only for a scheme with stages
    (else a stage-1 task is just a task)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    out = []
    for k in sorted(x for x in kinds if x.startswith("stage")):
        st = int(k[5:])
        text = f"stage {st} task" if staged else ("task" if st == 1 else f"stage {st} task")
        out.append(Patch(facecolor=STAGE_COLORS.get(st, "C2"), label=text))
    if "cancelled" in kinds:
        out.append(Patch(facecolor=CANCELLED, hatch="///", edgecolor="black",
                         label="cancelled"))
    if "unused" in kinds:
        out.append(Patch(facecolor="white", hatch="...", edgecolor="black",
                         label="result not used"))
    out.append(Patch(facecolor=IDLE, label="idle"))
    if decodable:
        out.append(Line2D([], [], color="0.3", lw=0.8, ls="--", label="decodable"))
    out.append(Line2D([], [], color="0.3", lw=0.6, label="iteration start"))
    return out


def gantt(run: dict, path: Path, span: tuple[int, int]) -> str:
    """Timeline of the workers over iterations ``span`` (A..B-1): a bar per task from its
    dispatch to its result (or its cancellation), coloured by stage; cancelled tasks red
    and hatched; idle time grey; dashed lines where the gradient became decodable."""
    lo, hi = span
    it = run["iterations"]
    N = int(run["attrs"].get("n_workers", 0))
    iters = it.get("iteration", np.arange(run["n"]))
    rows = np.flatnonzero((iters >= lo) & (iters < hi))
    t_start, t_end = it["t_start"], it["t_end"]
    fig, (ax,) = _figure(w=10.0, h=max(2.5, 1.0 + 0.45 * N))
    h = 0.7
    for w in range(N):  # idle: the whole iteration, tasks are drawn over it
        ax.broken_barh([(t_start[r], t_end[r] - t_start[r]) for r in rows], (w - h / 2, h),
                       facecolors=IDLE, edgecolor="none")
    kinds = _gantt_tasks(ax, run, lo, hi, h)
    decodable = False
    every = max(1, math.ceil(len(rows) / 12))  # at most ~12 labels: they never overlap
    for k, r in enumerate(rows):
        ax.axvline(t_start[r], color="0.3", lw=0.6)
        if "wait_s" in it and np.isfinite(it["wait_s"][r]):
            decodable = True
            ax.axvline(t_start[r] + it["wait_s"][r], color="0.3", lw=0.8, ls="--")
        if k % every == 0:
            ax.text(t_start[r], -0.62, f" it {int(iters[r])}", fontsize=7, va="bottom")
    ax.set_yticks(range(N), [f"worker {w} (rank {w + 1})" for w in range(N)])
    ax.set_ylim(-0.9, N - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("wall time since training began (s)")
    ax.set_title(f"Worker timeline: {label(run)}, iterations {lo}..{hi - 1}")
    staged = "stage2" in kinds or str(run["attrs"].get("scheme", "")) == "two-stage"
    ax.legend(handles=_gantt_legend(kinds, staged, decodable), fontsize="small",
              loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def has_backlogs(run: dict) -> bool:
    wk = run["workers"]
    return ("Q" in wk or "Z" in wk) and str(run["attrs"].get("scheduler", "none")) not in (
        "none", "")


def backlogs(run: dict, path: Path) -> str:
    """Data queue Q_i (bytes) and fairness queue Z_i per worker at the end of each iteration
    (and the per-slot sums when the log has /slots)."""
    wk, it = run["workers"], run["iterations"]
    panels = [k for k in ("Q", "Z") if k in wk]
    sl = run.get("slots", {})
    slot_panel = "slot" in sl and ("Q_sum" in sl or "Z_sum" in sl)
    fig, axes = _figure(h=3.0 * (len(panels) + slot_panel), rows=len(panels) + slot_panel)
    t = it.get("t_end", np.arange(run["n"], dtype=float))
    units = {"Q": "Q: data queue (bytes)", "Z": "Z: fairness queue (messages)"}
    for ax, k in zip(axes, panels, strict=False):  # axes may have a slot panel more
        v = np.asarray(wk[k], float)
        ax.set_ylabel(units[k])
        if not np.any(np.nan_to_num(v)):  # flat lines at 0 would look like a plotting bug
            ax.text(0.5, 0.5, f"{k} stayed empty (0 for every worker at every iteration)"
                    if np.isfinite(v).any() else f"{k} not recorded", ha="center",
                    va="center", transform=ax.transAxes)
            ax.set_yticks([])
            if np.isfinite(t).any() and np.nanmax(t) > np.nanmin(t):
                ax.set_xlim(np.nanmin(t), np.nanmax(t))  # the time axis of the other panels
            continue
        for w in range(v.shape[1]):
            ax.plot(t, v[:, w], lw=1, label=f"worker {w}")
        if v.shape[1] > 1:
            ax.plot(t, np.nanmean(v, axis=1), lw=2.2, color="k", label="mean")
        ax.grid(alpha=0.3)
    if panels:
        axes[len(panels) - 1].set_xlabel("wall time since training began (s)")
        drawn = [ax for ax in axes[:len(panels)] if ax.get_lines()]
        if drawn:
            drawn[0].legend(fontsize="x-small", ncol=2, loc="upper left",
                            bbox_to_anchor=(1.0, 1.0))
        axes[0].set_title(f"Backlogs: {label(run)}")
    if slot_panel:
        ax = axes[-1]
        slot_ms = float(analysis.config(run).get("slot_ms", 1.0))
        x = sl["slot"] * slot_ms / 1000.0
        if "Q_sum" in sl:
            ax.plot(x, sl["Q_sum"], lw=1, color="C0")
            ax.set_ylabel("sum of Q per slot (bytes)", color="C0")
        if "Z_sum" in sl:
            az = ax.twinx() if "Q_sum" in sl else ax
            az.plot(x, sl["Z_sum"], lw=1, color="C3")
            az.set_ylabel("sum of Z per slot (messages)", color="C3")
        ax.set_xlabel(f"slot x slot length ({slot_ms:g} ms), s")
        ax.set_title("Per-slot scheduler records (/slots)", fontsize="medium")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _stems(runs: list[dict]) -> list[str]:
    stems = [Path(r["path"]).name.removesuffix(".part").removesuffix(".h5") for r in runs]
    if len(set(stems)) < len(stems):
        stems = [f"{i}_{s}" for i, s in enumerate(stems)]
    return stems


def _out_dir(out_dir: str) -> Path:
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise UsageError(f"--plots {out_dir}: exists and is not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--plots {out_dir}: cannot create: {e.strerror}") from None
    return d


def write_all(runs: list[dict], out_dir: str, gantt_run: dict | None = None,
              gantt_span: tuple[int, int] | None = None,
              target_loss: float | None = None, groups=None,
              log_loss: bool = False) -> tuple[list[str], list[str]]:
    """Every plot into ``out_dir`` (created): loss_vs_time.png, loss_vs_iteration.png,
    metric_vs_time.png, load_coverage.png, straggler_scores.png, slowdown_attribution.png,
    gantt_<run>_<A>-<B>.png
    (``--gantt-iterations A:B``), backlog_<run>.png (runs with a scheduler and Q/Z logged),
    groups.png (``groups``: [(label, runs)], whose curves become means with CI bands).

    Returns (files written, notes). A write that fails (a full disk) is one WriteError
    that says which figures were written whole before it (the failed one is not there)."""
    _mpl()
    d = _out_dir(out_dir)
    written: list[str] = []
    try:
        notes = _write_all(runs, d, written, gantt_run, gantt_span, target_loss, groups,
                           log_loss)
    except WriteError as e:
        done = f"{len(written)} figures written whole before it: " + (
            ", ".join(Path(w).name for w in written) if written else "none")
        raise WriteError(f"{e}; {done}") from None
    return written, notes


def _write_all(runs, d: Path, written: list[str], gantt_run, gantt_span, target_loss, groups,
               log_loss) -> list[str]:
    notes: list[str] = []
    written.append(loss_vs_time(runs, d / "loss_vs_time.png", target_loss, groups, log_loss))
    written.append(loss_vs_iteration(runs, d / "loss_vs_iteration.png", groups,
                                     log_loss, target_loss))
    written.append(metric_vs_time(runs, d / "metric_vs_time.png", groups))
    written.append(load_coverage(runs, d / "load_coverage.png", groups))
    written.append(straggler_scores(runs, d / "straggler_scores.png", groups))
    written.append(slowdown_attribution(runs, d / "slowdown_attribution.png", groups))
    if groups:
        written.append(group_bars(groups, target_loss, d / "groups.png"))
    stems = dict(zip(map(id, runs), _stems(runs), strict=True))
    g = gantt_run
    if g is not None:
        if gantt_span is None or not g["n"]:
            notes.append(f"note: no Gantt chart: {g['path']} has no completed iteration")
        elif not g["tasks"]:
            notes.append(f"note: no Gantt chart: {g['path']} has no /tasks rows")
        else:
            lo, hi = gantt_span
            written.append(gantt(g, d / f"gantt_{stems[id(g)]}_{lo}-{hi}.png", gantt_span))
    with_q = [r for r in runs if has_backlogs(r)]
    for r in with_q:
        written.append(backlogs(r, d / f"backlog_{stems[id(r)]}.png"))
    if not with_q:
        notes.append("note: no backlog plot: no run logged /workers/Q or Z with a scheduler on")
    return notes


def slowdown_attribution(runs, path, groups=None) -> str:
    """Rows (runs, or ``--group-by`` groups: mean over their runs) x workers, coloured by the
    worker's share of the slowdown versus ideal; each row labelled with its S. Sized so that
    the title, the row labels and the colour bar's label fit (constrained layout)."""
    import textwrap
    sets = run_sets(runs, groups)
    rows, names = [], []
    for name, members in sets:
        shares = [[a["slowdown_share"] for a in slowdown.attribution(r)] for r in members]
        shares = [x for x in shares if x and np.isfinite(x).any()]
        if not shares:
            continue
        N = max(len(x) for x in shares)
        a = np.full((len(shares), N), np.nan)
        for i, x in enumerate(shares):
            a[i, :len(x)] = x
        with np.errstate(invalid="ignore"):
            rows.append(np.nanmean(a, axis=0))
        S = [slowdown.slowdown(r) for r in members]
        S = [x for x in S if math.isfinite(x)]
        tag = f"S={np.mean(S):.2f}" if S else "S -"
        names.append("\n".join(textwrap.wrap(f"{name} ({tag})", 48)))
    n_rows = max(1, len(rows))
    fig, (ax,) = _figure(w=10.0, h=2.2 + 0.45 * n_rows + 0.15 * sum(n.count("\n")
                                                                     for n in names))
    title = ("Share of the slowdown versus the straggler-free ideal, per worker "
             "(its time past ideal_s, over every worker's)")
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize="medium")
    if not rows:
        ax.text(0.5, 0.5, "no /iterations/ideal_s in these runs: no attribution", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return _save(fig, path)
    N = max(len(r) for r in rows)
    a = np.full((len(rows), N), np.nan)
    for i, r in enumerate(rows):
        a[i, :len(r)] = r
    im = ax.imshow(a, aspect="auto", cmap="magma_r", interpolation="nearest", vmin=0.0)
    cb = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    cb.set_label("share of the slowdown\n(a row sums to 1)", fontsize="small")
    ax.set_yticks(range(len(names)), names, fontsize="x-small")
    step = max(1, N // 16)
    ax.set_xticks(range(0, N, step))
    ax.set_xlabel("worker (rank = worker + 1)")
    if N <= 16 and len(rows) <= 12:  # small enough to print the numbers
        top = np.nanmax(a)
        for (i, w), v in np.ndenumerate(a):
            if np.isfinite(v):
                ax.text(w, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v > top * 0.6 else "black")
    return _save(fig, path)
