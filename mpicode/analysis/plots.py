"""PNG plots of runs (``mpicode report --plots DIR``), with matplotlib's Agg canvas.

matplotlib is optional (``pip install 'mpicode[plot]'``); without it, asking for plots is a
usage error that says what to install. No pyplot: figures are built on an Agg canvas
directly, so nothing here touches a display or global state.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import mpicode.analysis as analysis
from mpicode.errors import UsageError

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
    fig.savefig(path, format="png")
    return str(path)


def label(run: dict) -> str:
    a = run["attrs"]
    extra = "" if str(a.get("scheduler", "none")) in ("none", "?") else f", {a['scheduler']}"
    return (f"{Path(run['path']).name}: {a.get('scheme', '?')}{extra}, "
            f"{a.get('stragglers', '?')}, N={a.get('n_workers', '?')}")


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


def legend(ax, n: int) -> None:
    """Inside the axes for a few series, outside on the right (hiding no data) for more."""
    if n > 3:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.legend(fontsize="small")


def loss_vs_time(runs: list[dict], path: Path, target_loss: float | None = None,
                 groups=None, log: bool = False) -> str:
    """Training loss against wall time (end of each iteration), every run (or ``groups``:
    mean and 95% CI band per group) on one figure; ``log``: log-scale loss axis."""
    from mpicode.analysis import plots_more
    fig, (ax,) = _figure()
    plots_more._curves(ax, plots_more.run_sets(runs, groups), "t_end", "loss", log)
    if target_loss is not None:
        ax.axhline(target_loss, color="0.4", ls=":", lw=1, label=f"target {target_loss:g}")
    ax.set_xlabel("wall time since training began (s)")
    ax.set_ylabel("training loss" + (" (log scale)" if log else ""))
    ax.set_title("Loss against wall time")
    legend(ax, len(groups or runs))
    return _save(fig, path)


def load_coverage(runs: list[dict], path: Path) -> str:
    """Computation load and coverage per iteration, every run."""
    fig, (ax1, ax2) = _figure(h=6.0, rows=2, sharex=True)
    for i, run in enumerate(runs):
        it = run["iterations"]
        x = it.get("iteration", np.arange(run["n"]))
        st = style(i, len(runs), len(x))
        if "load" in it:
            ax1.plot(x, it["load"], drawstyle="steps-mid", label=label(run), **st)
        if "coverage" in it:
            ax2.plot(x, it["coverage"], drawstyle="steps-mid", label=label(run), **st)
    ax1.set_ylabel("load (partitions started / K)")
    ax2.set_ylabel("coverage (fraction decoded)")
    ax2.set_xlabel("iteration")
    ax2.set_ylim(-0.02, 1.05)
    ax1.set_ylim(bottom=0)
    ax1.set_title("Computation load and coverage per iteration")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    legend(ax1, len(runs))
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
                       ("..." if unused else None), alpha=0.9)
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
    ax.set_title(f"{label(run)}: iterations {lo}..{hi - 1}")
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

    Returns (files written, notes)."""
    from mpicode.analysis import plots_more
    _mpl()
    d = _out_dir(out_dir)
    written, notes = [], []
    written.append(loss_vs_time(runs, d / "loss_vs_time.png", target_loss, groups, log_loss))
    written.append(plots_more.loss_vs_iteration(runs, d / "loss_vs_iteration.png", groups,
                                                log_loss, target_loss))
    written.append(plots_more.metric_vs_time(runs, d / "metric_vs_time.png", groups))
    written.append(load_coverage(runs, d / "load_coverage.png"))
    written.append(plots_more.straggler_scores(runs, d / "straggler_scores.png"))
    written.append(plots_more.slowdown_attribution(runs, d / "slowdown_attribution.png",
                                                   groups))
    if groups:
        written.append(plots_more.group_bars(groups, target_loss, d / "groups.png"))
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
    return written, notes
