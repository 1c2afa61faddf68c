"""The failures scenario: two workers die at seeded iterations; time to the loss target.

::

    python -m studies.failures --quick          # 2 seeds, a few seconds
    python -m studies.failures --json results/failures.json \\
        --md results/failures.md                             # the full run: 5 seeds

Every cell is (approach, seed): ``mpicode simulate --compute real`` in-process (logistic
regression on the built-in synthetic data, N = 8 workers, ``shifted-exp`` stragglers, the
kernel cost model), seeded. A seed fixes the straggler draws and the failures: two distinct
workers die at two distinct iterations drawn from [10, 50), each half a median iteration
into it (``--fail W@iK+S``), and rank 0 learns of a death 1 ms later (``--detect-s``: a
dead rank is noticed at rank 0's next poll, at most its backoff's 1 ms; polling, ULFM
reported it within 0.1 ms in the elastic tests). Approaches:

* every exact elastic scheme with ``--on-failure continue`` (the dead worker is a permanent
  straggler: decoded around or re-issued; exact, every sample kept);
* **restart** (what torchelastic users do): ``uncoded`` under ``--on-failure abort`` with a
  checkpoint every :data:`CHECKPOINT_EVERY` iterations; at a failure the job restarts from
  the last checkpoint with N-1 workers after :data:`RESTART_S` seconds (launch, numba
  warm-up from the cache, data load: measured, see the constant), redoing the iterations
  since the checkpoint;
* **quorum** (torchft-style): ``--scheme quorum``, the dead worker's share dropped for the
  rest of the run; inexact, so its final loss and accuracy are reported too.

The loss target is the uninterrupted uncoded run's loss at iteration :data:`TARGET_AT` (every
exact approach follows that trajectory). Per approach (mean and 95% Student-t interval over
the seeds): virtual seconds to the target, that over the same scheme's time without
failures, the failure iterations' time from detection to their end in median iterations
(recovery), the final loss over the uninterrupted run's (minus 1) and the drop in final test
accuracy (about 1e-16 and 0 for the exact approaches, which end on the uninterrupted run's
model; the quorum's show what dropping the share costs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mpicode import simulator
from mpicode.analysis.runs import read_run
from mpicode.config import Config, defaults
from mpicode.engine.costs import CostModel
from mpicode.engine.membership import make_membership
from mpicode.schemes import SCHEMES as REGISTERED
from mpicode.stats import ci_dict as _ci

N = 8
ITERATIONS = 80
TARGET_AT = 60            # the target: the uninterrupted uncoded run's loss at this iteration
KILL_RANGE = (10, 50)     # failure iterations are drawn from this range
DETECT_S = 1e-3
CHECKPOINT_EVERY = 10
# seconds from a failure to the restarted job's first iteration (launch 9 ranks, numba warm-up
# from the on-disk cache, load the data, agree on the input): the median of 5
# `mpiexec -n 9 ... mpicode train --iterations 1` runs minus their training time on the
# project's 2-core machine (python -m studies.failures --measure-restart); a
# batch system's requeue adds its queue wait, not modelled
RESTART_S = 4.0
SCENARIO = {"stragglers": "shifted-exp", "shift": 1.0, "mu": 1.0, "delay_unit": 0.02}
# label -> options (with --on-failure continue): every exact elastic scheme
# (mpicode.schemes.base.Scheme.elastic; two-stage and self-scheduling re-issue)
CONTINUE = {"uncoded": {"scheme": "uncoded"},
            "speed-aware": {"scheme": "speed-aware"},
            "frc": {"scheme": "frc", "stragglers_tolerated": 1},
            "cyclic": {"scheme": "cyclic", "stragglers_tolerated": 1},
            "self-scheduling": {"scheme": "self-scheduling"},
            "two-stage": {"scheme": "two-stage", "stragglers_tolerated": 1}}
METRICS = ("time_to_target_s", "slowdown", "recovery_medians", "final_loss",
           "final_accuracy", "iterations")


def elastic(schemes: dict[str, dict]) -> dict[str, dict]:
    """The variants whose scheme survives a failure here."""
    return {k: v for k, v in schemes.items()
            if v["scheme"] in REGISTERED and REGISTERED[v["scheme"]].elastic}


def kills(seed: int, offset_s: float) -> list[tuple[int, int, float]]:
    """The seed's two failures: (worker, iteration, seconds into it)."""
    rng = np.random.default_rng([seed, 26])
    workers = rng.choice(N, size=2, replace=False)
    its = np.sort(rng.choice(np.arange(*KILL_RANGE), size=2, replace=False))
    return [(int(w), int(i), offset_s) for w, i in zip(workers, its, strict=True)]


def fail_spec(ks) -> str:
    return ",".join(f"{w}@i{i}+{off:.9g}" for w, i, off in ks)


def _config(opts: dict, out: Path, workers: int = N, iterations: int = ITERATIONS):
    v = dict(defaults().values)
    v.update(SCENARIO, workers=workers, iterations=iterations, compute="real", quiet=True,
             out=str(out), force=True, detect_s=DETECT_S)
    v.update(opts)
    return Config(v)


def simulate(opts: dict, out: Path, **kw) -> dict:
    """One run through ``mpicode simulate`` (in-process); its rows and events."""
    code = simulator.simulate(_config(opts, out, **kw))
    if code not in (0, 1):
        raise RuntimeError(f"failures: simulate exited {code} for {opts}")
    r = read_run(str(out))
    return {"it": r["iterations"], "events": r["events"], "status": r["status"]}


def first_time(it: dict, target: float) -> float:
    hit = np.flatnonzero(np.asarray(it["loss"]) <= target)
    return float(it["t_end"][hit[0]]) if hit.size else math.inf


def recovery(it: dict, events: list[dict]) -> list[float]:
    """Per failure: (end of the iteration that recovered - detection) / median iteration."""
    dur = np.asarray(it["t_end"]) - np.asarray(it["t_start"])
    med = float(np.median(dur))
    return [(float(it["t_end"][e["iteration"]]) - e["t_detect"]) / med for e in events
            if e["iteration"] < len(dur)]


def continued(label: str, opts: dict, ks, target: float, tmp: Path, clean: dict) -> dict:
    run = simulate({**opts, "on_failure": "continue", "fail": fail_spec(ks)},
                   tmp / f"{label}.h5")
    it = run["it"]
    t = first_time(it, target)
    return {"time_to_target_s": t, "slowdown": t / clean[label],
            "recovery_medians": float(np.max(recovery(it, run["events"]) or [math.nan])),
            "final_loss": float(it["loss"][-1]), "final_accuracy": float(it["accuracy"][-1]),
            "iterations": int(len(it["loss"]))}


def restarted(opts: dict, ks, target: float, tmp: Path) -> dict:
    """uncoded under abort; at each failure a new job with one worker fewer resumes from the
    last checkpoint (iteration floor(k / C) * C) RESTART_S later. Simulated as segments:
    the failed run, then the same run cut at the checkpoint (deterministic: it gives the
    checkpoint's model), then the next job restored from it."""
    workers, start, w, t0, ks = N, 0, None, 0.0, list(ks)
    hit = math.inf
    while True:
        # this job's workers are renumbered 0..workers-1; a later failure keeps its worker
        # index modulo the job's size
        spec = fail_spec([(v % workers, i, off) for v, i, off in ks])
        cfg, problem, scheme, uplink, stragglers, _ = simulator.prepare(_config(
            {**opts, "on_failure": "abort", "fail": spec}, tmp / "seg.h5", workers=workers))
        sim = simulator.Simulator(scheme, stragglers, n_workers=workers, problem=problem,
                                  lr=cfg.lr, partition_cost=cfg.partition_cost, uplink=uplink,
                                  costs=CostModel.from_config(cfg),
                                  membership=make_membership(cfg, workers))
        if w is not None:
            sim.restore({"w": w, "vt": t0, "t_offset": 0.0, "iteration": start})
        sim.run(ITERATIONS - start, start=start)
        rows = sim.history
        for r in rows:
            if r["loss"] <= target:
                hit = min(hit, r["t_end"])
        if sim.status != "failed":
            last = rows[-1]
            return {"time_to_target_s": hit, "final_loss": float(last["loss"]),
                    "final_accuracy": float(last["accuracy"]), "iterations": ITERATIONS,
                    "restarts": N - workers}
        k = start + len(rows)                       # the iteration the failure struck
        t_fail = (rows[-1]["t_end"] if rows else t0) + (ks[0][2] if ks[0][1] == k else 0.0)
        ckpt = (k // CHECKPOINT_EVERY) * CHECKPOINT_EVERY
        ckpt = max(ckpt, start)
        # the model at the checkpoint: the same job (deterministic) cut there
        if ckpt > start:
            cfg2, p2, s2, u2, st2, _ = simulator.prepare(
                _config({**opts, "fail": ""}, tmp / "cut.h5", workers=workers))
            cut = simulator.Simulator(s2, st2, n_workers=workers, problem=p2, lr=cfg2.lr,
                                      partition_cost=cfg2.partition_cost, uplink=u2,
                                      costs=CostModel.from_config(cfg2))
            if w is not None:
                cut.restore({"w": w, "vt": t0, "t_offset": 0.0, "iteration": start})
            cut.run(ckpt - start, start=start)
            w = cut.w.copy()
        w = w if w is not None else problem.initial_w()
        ks.pop(0)
        workers, start, t0 = workers - 1, ckpt, t_fail + RESTART_S


def quorum(ks, target: float, tmp: Path) -> dict:
    run = simulate({"scheme": "quorum", "on_failure": "continue", "fail": fail_spec(ks)},
                   tmp / "quorum.h5")
    it = run["it"]
    return {"time_to_target_s": first_time(it, target), "final_loss": float(it["loss"][-1]),
            "final_accuracy": float(it["accuracy"][-1]), "iterations": int(len(it["loss"])),
            "final_coverage": float(it["coverage"][-1])}


def run(seeds: int, schemes: dict[str, dict], log=print) -> tuple[list[dict], dict]:
    rows: dict[str, list[dict]] = {}
    targets = []
    with tempfile.TemporaryDirectory(prefix="mpicode-failures-") as d:
        tmp = Path(d)
        for k in range(seeds):
            seed = 200 + k
            ref = simulate({"scheme": "uncoded", "seed": seed}, tmp / "ref.h5")["it"]
            target = float(ref["loss"][TARGET_AT])
            targets.append(target)
            med = float(np.median(ref["t_end"] - ref["t_start"]))
            ks = kills(seed, 0.5 * med)
            clean = {lab: first_time(simulate({**o, "seed": seed}, tmp / "c.h5")["it"], target)
                     for lab, o in schemes.items()}
            got = {lab: continued(lab, {**o, "seed": seed}, ks, target, tmp, clean)
                   for lab, o in schemes.items()}
            got["restart (uncoded, N-1)"] = restarted({"scheme": "uncoded", "seed": seed}, ks,
                                                      target, tmp)
            got["quorum (drop the share)"] = quorum(ks, target, tmp)
            for lab, m in got.items():
                m.setdefault("slowdown", m["time_to_target_s"] / clean["uncoded"])
                m["loss_excess"] = m["final_loss"] / float(ref["loss"][-1]) - 1.0
                m["accuracy_drop"] = float(ref["accuracy"][-1]) - m["final_accuracy"]
                rows.setdefault(lab, []).append(m)
            log(f"  failures: seed {seed}: kills {ks}")
    out = []
    for lab, per in rows.items():
        row = {"approach": lab, "n": len(per)}
        for m in sorted({m for p in per for m in p}):
            row[m] = [p.get(m, math.nan) for p in per]
        out.append(row)
    return out, {"targets": targets}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        s = {"approach": r["approach"]}
        for m in METRICS + ("final_coverage", "loss_excess", "accuracy_drop"):
            if m in r:
                v = np.asarray(r[m], float)
                s[m] = _ci(v) if np.isfinite(v).all() else {
                    "mean": math.inf if np.isinf(v).any() else math.nan, "lo": math.nan,
                    "hi": math.nan, "never": int(np.isinf(v).sum())}
        out.append(s)
    return out


def table(summary: list[dict]) -> list[str]:
    def f(c, fmt="{:.3f}"):
        if c is None:
            return "-"
        if not math.isfinite(c["mean"]):
            return f"never ({c.get('never', '?')} seeds)" if c["mean"] == math.inf else "-"
        return (fmt + " [" + fmt + ", " + fmt + "]").format(c["mean"], c["lo"], c["hi"])
    lines = ["| approach | time to target (s) | / same without failures | recovery "
             "(median iterations) | final loss over the exact runs' - 1 | final test "
             "accuracy drop |", "|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['approach']} | {f(s.get('time_to_target_s'))} | "
                     f"{f(s.get('slowdown'))} | {f(s.get('recovery_medians'), '{:.2f}')} | "
                     f"{f(s.get('loss_excess'), '{:.2e}')} | "
                     f"{f(s.get('accuracy_drop'), '{:.4f}')} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.failures",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 seeds")
    p.add_argument("--seeds", type=int, default=None, help="seeds (default 5; --quick 2)")
    p.add_argument("--json", default=None, metavar="FILE")
    p.add_argument("--md", default=None, metavar="FILE", help="write the table as markdown")
    a = p.parse_args(argv)
    seeds = a.seeds or (2 if a.quick else 5)
    schemes = elastic(CONTINUE)
    t0 = time.perf_counter()
    rows, meta = run(seeds, schemes, log=lambda s: print(s, file=sys.stderr, flush=True))
    summary = summarise(rows)
    meta.update(seeds=seeds, N=N, iterations=ITERATIONS, target_at=TARGET_AT,
                detect_s=DETECT_S, checkpoint_every=CHECKPOINT_EVERY, restart_s=RESTART_S,
                scenario=SCENARIO, schemes=list(schemes),
                not_elastic=[k for k in CONTINUE if k not in schemes],
                wall_s=time.perf_counter() - t0)
    text = "\n".join(table(summary))
    print(text)
    if a.md:
        Path(a.md).write_text(_markdown(text, meta))
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary},
                                           indent=1, default=float))
    print(f"failures: {len(rows)} approaches x {seeds} seeds in {meta['wall_s']:.0f} s",
          file=sys.stderr)
    return 0


def _markdown(text: str, meta: dict) -> str:
    skipped = (f" Not elastic here (left out): {', '.join(meta['not_elastic'])}."
               if meta["not_elastic"] else "")
    return (f"# Failures: two workers die mid-run\n\n"
            f"`python -m studies.failures` ({meta['seeds']} seeds, "
            f"{meta['wall_s']:.0f} s). Simulator, N = {meta['N']}, {meta['iterations']} "
            f"iterations, shifted-exp stragglers; per seed two workers die at two iterations "
            f"drawn from {list(KILL_RANGE)}, half a median iteration into them, detected "
            f"{meta['detect_s'] * 1e3:g} ms later. Target: the uninterrupted uncoded run's "
            f"loss at iteration {meta['target_at']}. Restart: checkpoint every "
            f"{meta['checkpoint_every']} iterations, {meta['restart_s']:g} s per restart. "
            f"Mean [95% CI] over seeds; recovery = (end of the iteration that recovered - "
            f"detection) / median iteration (worst of the two failures).{skipped}\n\n"
            f"{text}\n")


if __name__ == "__main__":
    sys.exit(main())
