"""The suite's PNG figures, on matplotlib's Agg canvas (no pyplot, no display).

* ``accuracy_<scenario>.png``: test accuracy (top) and training loss (bottom) against wall
  time, per scheme, one column per dataset;
* ``load.png``: mean computation load per scheme and scenario;
* ``comm.png``: communication time per iteration per scheduler (mean bar, p95 tick);
* ``fairness.png``: long-run participation per worker and scheduler (Jain's index in the
  legend);
* ``noniid.png``: test accuracy per iteration under label-sorted (solid) and IID (dotted)
  partitions: ignore-stragglers against the exact schemes and two-stage with fair admission;
* ``scale.png``: the policy's own seconds per iteration against N and against |U|;
* ``mpi_seeded.png``: the seeded MPI comparison: mean time to the loss target per scheme,
  scenario and placement, with 95% confidence intervals as error bars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mpicode.io import safefile
from studies.analyse import series
from studies.suite import (
    NONIID,
    SCHEDULER_SCHEMES,
    SCHEDULERS,
    SCHEMES,
    SWEEP_SCHEMES,
    slug,
)

PALETTE = ("#4c4c4c", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#3b75af", "#55a868",
           "#ef8636", "#8c8c8c", "#64b5cd")


class _Colors(dict):
    """Fixed colours for the labels the paper's figures use; any other label (a newly
    registered scheme or scheduler) gets the next colour of the palette."""

    def __missing__(self, label):
        self[label] = PALETTE[len(self) % len(PALETTE)]
        return self[label]


COLORS = _Colors({
    "uncoded": "#4c4c4c", "ignore-stragglers": "#c44e52", "speed-aware": "#8172b2",
    "frc": "#937860", "cyclic": "#da8bc3", "two-stage": "#3b75af",
    "two-stage (paper)": "#55a868", "self-scheduling": "#ef8636",
    "fifo": "#937860", "round-robin": "#da8bc3", "max-weight": "#8172b2", "lyapunov": "#3b75af",
    "ignore-stragglers s=1": "#c44e52", "ignore-stragglers s=2": "#ef8636",
    "two-stage + fair admission": "#55a868",
})


def _figure(w: float, h: float, rows: int = 1, cols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, path: Path) -> str:
    with safefile.writing(path) as f:  # never through a symlink, never half a PNG
        fig.savefig(f, format="png")
    return path.name


def accuracy(suite, read, scen: str, out: Path, tg: dict) -> str:
    cols = len(suite.datasets)
    fig, ax = _figure(4.2 * cols, 6.4, rows=2, cols=cols)
    for j, ds in enumerate(suite.datasets):
        for label in SCHEMES:
            s = series(read(f"schemes-{ds.key}-{scen}-{slug(label)}"))
            ls = "--" if label == "two-stage (paper)" else "-"
            ax[0, j].plot(s["t"], s["acc"], ls, color=COLORS[label], label=label, lw=1.4)
            ax[1, j].plot(s["t"], s["loss"], ls, color=COLORS[label], label=label, lw=1.4)
        t = tg[(ds.key, scen)]
        ax[0, j].axhline(t["acc"], color="0.5", ls=":", lw=1)
        ax[1, j].axhline(t["loss"], color="0.5", ls=":", lw=1)
        ax[0, j].set_title(f"{ds.key} ({ds.options['model']})")
        ax[1, j].set_xlabel("training time (s)")
        ax[1, j].set_yscale("log")
        for a in ax[:, j]:
            a.grid(alpha=0.3)
    ax[0, 0].set_ylabel("test accuracy")
    ax[1, 0].set_ylabel("training loss")
    ax[0, 0].legend(fontsize="x-small", loc="lower right")
    fig.suptitle(f"Scenario {scen}: every scheme replays the same straggler trace "
                 f"(dotted: targets)")
    return _save(fig, out / f"accuracy_{scen}.png")


def load(suite, schemes: dict, out: Path) -> str:
    scens = list(suite.scenarios())
    fig, ((ax,),) = _figure(9, 4)
    width = 0.8 / len(SCHEMES)
    for k, label in enumerate(SCHEMES):
        vals = [[schemes[(ds.key, sc)][label]["mean_load"] for ds in suite.datasets]
                for sc in scens]
        mean = [float(np.mean(v)) for v in vals]
        err = np.array([[m - min(v) for m, v in zip(mean, vals, strict=True)],
                        [max(v) - m for m, v in zip(mean, vals, strict=True)]])
        x = np.arange(len(scens)) + (k - (len(SCHEMES) - 1) / 2) * width
        ax.bar(x, mean, width, yerr=err, color=COLORS[label], label=label, capsize=2)
    ax.set_xticks(np.arange(len(scens)), scens)
    ax.set_ylabel("mean computation load (partitions started / K)")
    ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
    ax.set_title("Computation load per scheme (mean over datasets; bars: min-max)")
    ax.set_ylim(0, 2.6)
    ax.legend(fontsize="x-small", ncol=4, loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / "load.png")


def comm(scheds: dict, out: Path) -> str:
    fig, ((ax,),) = _figure(8, 4)
    width = 0.8 / len(SCHEDULERS)
    for k, s in enumerate(SCHEDULERS):
        x = np.arange(len(SCHEDULER_SCHEMES)) + (k - (len(SCHEDULERS) - 1) / 2) * width
        mean = [1e3 * scheds[sc][s]["mean_comm_s"] for sc in SCHEDULER_SCHEMES]
        p95 = [1e3 * scheds[sc][s]["p95_comm_s"] for sc in SCHEDULER_SCHEMES]
        ax.bar(x, mean, width, color=COLORS[s], label=s)
        ax.plot(x, p95, "_", color="k", ms=12, mew=1.5, label="p95" if k == 0 else None)
    ax.set_xticks(np.arange(len(SCHEDULER_SCHEMES)), SCHEDULER_SCHEMES)
    ax.set_ylabel("communication time per iteration (ms)")
    ax.set_title("Uplink schedulers on a near/far Rayleigh channel (bars: mean, ticks: p95)")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / "comm.png")


def fairness(scheds: dict, out: Path) -> str:
    n = len(SCHEDULER_SCHEMES)
    fig, ax = _figure(4.2 * n, 3.8, cols=n)
    for j, sc in enumerate(SCHEDULER_SCHEMES):
        a = ax[0, j]
        N = len(scheds[sc][SCHEDULERS[0]].get("participation", []))
        width = 0.8 / len(SCHEDULERS)
        for k, s in enumerate(SCHEDULERS):
            m = scheds[sc][s]
            p = m.get("participation", [np.nan] * N)
            x = np.arange(N) + (k - (len(SCHEDULERS) - 1) / 2) * width
            a.bar(x, p, width, color=COLORS[s],
                  label=f"{s} (Jain {m.get('jain_participation', np.nan):.3f})")
        a.set_ylim(0, 1.3)
        a.set_xticks(np.arange(N), [str(i + 1) for i in range(N)])
        a.set_xlabel("worker (rank)")
        a.set_title(sc)
        a.legend(fontsize="x-small", loc="upper center", ncol=2)
        a.grid(axis="y", alpha=0.3)
    ax[0, 0].set_ylabel("long-run participation (admitted / resolved offers)")
    fig.suptitle("Participation fairness per scheduler (worker 1 nearest, highest mean SNR; "
                 "worker N farthest)")
    return _save(fig, out / "fairness.png")


def noniid(suite, read, out: Path) -> str:
    keys = suite.noniid_datasets
    fig, ax = _figure(5.0 * len(keys), 4.2, cols=len(keys))
    for j, key in enumerate(keys):
        a = ax[0, j]
        for part, ls in (("sorted", "-"), ("iid", ":")):
            for v in NONIID:
                s = series(read(f"noniid-{key}-{part}-{slug(v)}"))
                a.plot(np.arange(1, len(s["acc"]) + 1), s["acc"], ls, color=COLORS[v],
                       lw=1.6 if part == "sorted" else 1.0,
                       label=v if part == "sorted" else None)
        a.set_title(f"{key} ({suite.dataset(key).options['model']})")
        a.set_xlabel("iteration")
        a.grid(alpha=0.3)
        a.legend(fontsize="x-small", loc="lower right")
    ax[0, 0].set_ylabel("test accuracy")
    fig.suptitle("Persistent (bimodal) stragglers: label-sorted (solid) and IID (dotted) "
                 "partitions")
    return _save(fig, out / "noniid.png")


def scale(rows: list[dict], lstsq: list[dict], out: Path) -> str:
    fig, ax = _figure(10, 4, cols=2)
    ax[0, 0].loglog([r["N"] for r in lstsq], [1e3 * r["lstsq_s"] for r in lstsq], ":",
                    color=COLORS["cyclic"], label="cyclic: decoding solve alone")
    for label in SWEEP_SCHEMES:
        rs = [r for r in rows if r["scheme"] == label]
        if not rs:
            continue
        ax[0, 0].loglog([r["N"] for r in rs], [1e3 * r["policy_s"] for r in rs], "o-",
                        color=COLORS[label], label=label)
        if label.startswith("two-stage"):
            ax[0, 1].loglog([r["uncovered"] for r in rs], [1e3 * r["policy_s"] for r in rs],
                            "o-", color=COLORS[label], label=label)
    for a, xl in ((ax[0, 0], "workers N"), (ax[0, 1], "uncovered partitions |U| per iteration")):
        a.set_xlabel(xl)
        a.set_ylabel("policy CPU ms per iteration")
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize="small")
    ax[0, 0].set_title("Planning + decoding cost against N (simulator)")
    ax[0, 1].set_title("Two-stage against the uncovered partitions")
    return _save(fig, out / "scale.png")


def seeded_bars(sd: dict, out: Path) -> str:
    cases = list(sd["cases"])
    labels = list(dict.fromkeys(r["scheme"] for r in sd["rows"]))
    by = {(r["scenario"], r["placement"], r["scheme"]): r["t_loss"] for r in sd["rows"]}
    fig, ((ax,),) = _figure(11, 4.2)
    width = 0.8 / len(labels)
    for k, lab in enumerate(labels):
        x = np.arange(len(cases)) + (k - (len(labels) - 1) / 2) * width
        c = [by.get((*case, lab), {"mean": np.nan, "lo": np.nan, "hi": np.nan})
             for case in cases]
        m = np.array([v["mean"] for v in c])
        err = np.array([[v["mean"] - v["lo"] for v in c], [v["hi"] - v["mean"] for v in c]])
        ax.bar(x, m, width, color=COLORS[lab], label=lab, yerr=err, capsize=2,
               error_kw={"elinewidth": 0.8})
    ax.set_xticks(np.arange(len(cases)), [f"{a}\n{b}" for a, b in cases], fontsize="small")
    ax.set_ylabel("time to the loss target (s)")
    ax.set_title(f"MPI runtime, {sd['seeds']} straggler realisations ({sd['dataset']}): mean "
                 "and 95% CI")
    ax.legend(fontsize="x-small", ncol=4)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / "mpi_seeded.png")


def write_all(suite, read, res: dict, out: Path) -> list[str]:
    names = [accuracy(suite, read, sc, out, res["targets"]) for sc in suite.scenarios()]
    names.append(load(suite, res["schemes"], out))
    names.append(comm(res["schedulers"], out))
    names.append(fairness(res["schedulers"], out))
    names.append(noniid(suite, read, out))
    names.append(scale(res["sweep"]["rows"], res["sweep"]["lstsq"], out))
    names.append(seeded_bars(res["seeded"], out))
    return names
