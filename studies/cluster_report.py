"""The tables of the real-link study (:mod:`studies.cluster_links`): figures per
cell, real against emulated against predicted, and the slow link.

Per cell (from its per-iteration series, or the simulator's figures): the mean link time per
iteration (``link_s``: from the moment the ready messages could first decode to
decodability, the time the uplink added; docs/design.md §4.4a), the mean iteration time, and
the time to target (``t_end`` of the iteration at 80% of the run, minus the first row's
start: every scheme here is exact, so that iteration has the same loss in every cell of a
seed). Seeds are paired; ratios are per seed, with 95% Student-t intervals.
"""

from __future__ import annotations

import math

import numpy as np

from mpicode.io import safefile
from mpicode.stats import mean_ci
from studies.comm_study import target_iteration
from studies.suite import EXACT

TARGET = 0.15  # the real link time of the best scheduler within 15% of the prediction


def metrics(rec: dict) -> dict:
    """``mean_link_s``, ``mean_iter_s``, ``time_to_target_s`` and ``loss_at_target`` of a
    cell (the simulator's records already carry the first three)."""
    if "loss" not in rec:
        return {k: rec[k] for k in ("mean_link_s", "mean_iter_s", "time_to_target_s")}
    it, t_end, loss = (np.asarray(rec[k], float) for k in ("iter_s", "t_end", "loss"))
    if not len(it):
        return {"mean_link_s": math.nan, "mean_iter_s": math.nan,
                "time_to_target_s": math.nan, "loss_at_target": math.nan}
    k = min(target_iteration(len(it)), len(it) - 1)
    link = np.asarray(rec["link_s"], float)
    return {"mean_link_s": float(np.nanmean(link)) if np.isfinite(link).any() else math.nan,
            "mean_iter_s": float(it.mean()),
            "time_to_target_s": float(t_end[k] - t_end[0] + it[0]),
            "loss_at_target": float(loss[k])}


def _by_seed(cells: dict, prefix: str, key: str) -> dict[int, float]:
    out = {}
    for name, rec in cells.items():
        if name.startswith(prefix + "|"):
            out[int(name.rsplit("|", 1)[1])] = metrics(rec)[key]
    return out


def _fmt(m: tuple, unit: float = 1e3, digits: int = 1) -> str:
    mean, lo, hi = m
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(lo) or lo == hi:
        return f"{mean * unit:.{digits}f}"
    return f"{mean * unit:.{digits}f} [{lo * unit:.{digits}f}, {hi * unit:.{digits}f}]"


def _ratio(a: dict, b: dict) -> tuple:
    seeds = sorted(set(a) & set(b))
    return mean_ci([a[s] / b[s] for s in seeds if b[s] > 0])


LABELS = ("real-wired", "emulated-wired", "predicted-wired", "real-tdma", "predicted-tdma")
KEYS = ("mean_link_s", "mean_iter_s", "time_to_target_s")


def scheduler_rows(cells: dict, scheme: str, schedulers) -> list[dict]:
    rows = []
    for sched in schedulers:
        fig = {t: {k: _by_seed(cells, f"sched|{scheme}|{sched}|{t}", k) for k in KEYS}
               for t in LABELS}
        rows.append({"scheduler": sched, **{
            f"{k}|{t}": mean_ci(list(fig[t][k].values())) for t in fig for k in fig[t]},
            "link_ratio": _ratio(fig["real-wired"]["mean_link_s"],
                                 fig["predicted-wired"]["mean_link_s"]),
            "emu_ratio": _ratio(fig["real-wired"]["mean_link_s"],
                                fig["emulated-wired"]["mean_link_s"]),
            "tdma_ratio": _ratio(fig["real-tdma"]["mean_link_s"],
                                 fig["predicted-tdma"]["mean_link_s"])})
    return rows


def goodput_table(goodput: list[dict]) -> list[str]:
    lines = ["| worker (node) | tc uplink | alone into node 0 (model) | TCP goodput | "
             "goodput / model |", "|---|---|---|---|---|"]
    for g in goodput:
        lines.append(f"| {g['worker']} (n{g['worker'] + 1}) | {g['uplink'] / 1e6:.2f} MB/s | "
                     f"{g['model'] / 1e6:.2f} MB/s | {g['goodput'] / 1e6:.3f} MB/s | "
                     f"{g['goodput'] / g['model']:.3f} |")
    return lines


def scheduler_table(cells: dict, schemes, schedulers) -> tuple[list[str], list[dict]]:
    lines = ["| scheme | scheduler | link ms, wired: real | emulated | predicted | real / "
             "emulated | real / predicted | link ms, tdma: real | predicted | real / predicted "
             "| iteration ms: real wired | real tdma | time to target s: real wired | real tdma |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    best = []
    for scheme in schemes:
        rows = scheduler_rows(cells, scheme, schedulers)
        for r in rows:
            lines.append(
                f"| {scheme} | {r['scheduler']} | {_fmt(r['mean_link_s|real-wired'])} | "
                f"{_fmt(r['mean_link_s|emulated-wired'])} | "
                f"{_fmt(r['mean_link_s|predicted-wired'])} | {_fmt(r['emu_ratio'], 1, 3)} | "
                f"{_fmt(r['link_ratio'], 1, 3)} | "
                f"{_fmt(r['mean_link_s|real-tdma'])} | {_fmt(r['mean_link_s|predicted-tdma'])} "
                f"| {_fmt(r['tdma_ratio'], 1, 3)} | {_fmt(r['mean_iter_s|real-wired'])} | "
                f"{_fmt(r['mean_iter_s|real-tdma'])} | "
                f"{_fmt(r['time_to_target_s|real-wired'], 1, 2)} | "
                f"{_fmt(r['time_to_target_s|real-tdma'], 1, 2)} |")
        ideal = {k: mean_ci(list(_by_seed(cells, f"sched|{scheme}|ideal|real", k).values()))
                 for k in ("mean_iter_s", "time_to_target_s")}
        lines.append(f"| {scheme} | none (ideal: TCP shares B) | | | | | | | | | "
                     f"{_fmt(ideal['mean_iter_s'])} | | {_fmt(ideal['time_to_target_s'], 1, 2)}"
                     " | |")
        ok = [r for r in rows if math.isfinite(r["mean_link_s|real-wired"][0])]
        if ok:
            b = min(ok, key=lambda r: r["mean_link_s|real-wired"][0])
            best.append({"scheme": scheme, "scheduler": b["scheduler"],
                         "ratio": b["link_ratio"][0], "emu_ratio": b["emu_ratio"][0],
                         "within": abs(b["link_ratio"][0] - 1) <= TARGET,
                         "emu_within": abs(b["emu_ratio"][0] - 1) <= TARGET})
    return lines, best


def slow_table(cells: dict, schemes) -> list[str]:
    lines = ["| scheme | uplink scheduler | time to target s: steady | throttled | "
             "throttled / steady | iteration ms: steady | throttled |",
             "|---|---|---|---|---|---|---|"]
    for scheme in schemes:
        for sched in ("ideal", "lyapunov"):
            f = {s: {k: _by_seed(cells, f"slow|{scheme}|{sched}|{s}", k)
                     for k in ("time_to_target_s", "mean_iter_s")}
                 for s in ("steady", "throttled")}
            if not f["steady"]["time_to_target_s"]:
                continue
            tt = {s: mean_ci(list(f[s]["time_to_target_s"].values())) for s in f}
            it = {s: mean_ci(list(f[s]["mean_iter_s"].values())) for s in f}
            ratio = _ratio(f["throttled"]["time_to_target_s"], f["steady"]["time_to_target_s"])
            label = ("none (ideal: TCP)" if sched == "ideal"
                     else "lyapunov, wired, --link-timing real")
            lines.append(f"| {scheme} | {label} | {_fmt(tt['steady'], 1, 2)} | "
                         f"{_fmt(tt['throttled'], 1, 2)} | {_fmt(ratio, 1, 2)} | "
                         f"{_fmt(it['steady'])} | {_fmt(it['throttled'])} |")
    return lines


def exactness(cells: dict) -> float:
    """The largest relative spread of the loss at target among the MPI cells of a seed (every
    scheme is exact: 0 up to rounding)."""
    by_seed: dict[int, list[float]] = {}
    for name, rec in cells.items():
        if "loss" in rec and rec["loss"]:
            by_seed.setdefault(int(name.rsplit("|", 1)[1]), []).append(
                metrics(rec)["loss_at_target"])
    worst = 0.0
    for v in by_seed.values():
        v = np.asarray(v)
        worst = max(worst, float((v.max() - v.min()) / abs(v.mean())))
    return worst


def write_report(res: dict, path, sched_schemes, schedulers) -> None:
    """``path``: the study's tables (markdown) from its record ``res``; the scheduler block's
    schemes and schedulers, in the order of the table."""
    st, cells = res["study"], res["cells"]
    load = res.get("load")
    lk = st["links"]
    lines = ["# Real links: the uplink schedulers on a rate-limited virtual cluster", "",
             f"Rank 0 alone on node 0, one worker per node (N = {len(lk['uplinks'])}); worker "
             f"uplinks {', '.join(f'{r / 1e6:g}' for r in lk['uplinks'])} MB/s (tbf), a shared "
             f"bottleneck of {lk['bottleneck'] / 1e6:g} MB/s into node 0 (htb); "
             f"{st['features']} features ({8 * (st['features'] + 6)} B per result), "
             f"{st['iterations']} iterations, {st['seeds']} seeds, shifted-exp stragglers "
             f"(delay unit {st['delay_unit']} s), {lk['slot_ms']} ms slots. The scheduler's "
             "channel model is a trace of the same rates. No emulated latency or loss: this "
             "kernel has no netem.", "", "## The links", ""]
    lines += goodput_table(res.get("goodput", []))
    if any(n.startswith("sched|") for n in cells):
        table, best = scheduler_table(cells, sched_schemes, schedulers)
        lines += ["", "## Schedulers: real links against the emulated channel", "",
                  "real: shaped links, `--link-timing real`; emulated: unshaped links, "
                  "`--link-timing emulated` (MPI, same job, interleaved); predicted: the "
                  "simulator (virtual time). wired: `--access wired --bottleneck B`, R_i = "
                  "uplink_i; tdma: one worker per slot, R_i = min(uplink_i, B). Link time: "
                  "from the moment the ready messages could decode to decodability. Means "
                  "over seeds [95% CI].", ""] + table
        lines += [""] + [f"* {b['scheme']}: best scheduler on the real links (wired) "
                         f"{b['scheduler']}; link time real / emulated (MPI) "
                         f"{b['emu_ratio']:.3f} ({'within' if b['emu_within'] else 'NOT within'}"
                         f" {TARGET:.0%}), real / predicted (simulator) {b['ratio']:.3f} "
                         f"({'within' if b['within'] else 'NOT within'} {TARGET:.0%})"
                         for b in best]
    if any(n.startswith("slow|") for n in cells):
        t = st["throttle"]
        lines += ["", "## A slow link mid-run", "",
                  f"Worker {t['worker']}'s uplink throttled to {t['factor']:g}x after "
                  f"iteration {t['at']} (tc qdisc change while the job runs).", ""]
        lines += slow_table(cells, EXACT)
    lines += ["", f"Loss at target, largest relative spread within a seed (exact schemes): "
              f"{exactness(cells):.2e}. {len(cells)} cells, {res['seconds']:.0f} s on "
              f"{res['host']}" + (f" (load average {load[0]:.1f} before, {load[1]:.1f} after: "
                                  "other processes share the cores, and every MPI time here "
                                  "includes waiting for a core)" if load else "") + "."
              + (f" Code: commit {res['commit']}." if res.get("commit") else ""), ""]
    safefile.write_text(path, "\n".join(lines))
