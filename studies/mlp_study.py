"""An MLP on digits under the straggler scenarios, seeded, with confidence intervals.

::

    python -m studies.mlp_study --quick            # a few seconds
    python -m studies.mlp_study --json mlp.json    # the full run: 5 seeds

Every cell is (scenario, scheme, seed): ``mpicode simulate --compute real`` (real numerics:
the fused numba MLP, mini-batches, Adam on rank 0), in-process, on the bundled digits set
(standardised, 20% held out) with ``--model mlp --hidden 64 --optimizer adam --lr 0.01
--batch-size 128 --workers 4 --epochs 10``, ``--delay-unit 0.02`` and a fixed
``--partition-cost`` (:data:`PARTITION_COST_S`). The scenarios are the simulator study's
(:data:`studies.study.SCENARIOS`, the replayed real traces included); a seed fixes
the straggler draws, the model's initialisation and the mini-batches, shared by every scheme of
that (scenario, seed), so the exact schemes train the same model and differ only in time.
Per cell (mean and 95% Student-t interval over the seeds): virtual seconds to the test-accuracy
target and to the test-loss target, final test accuracy and loss, mean iteration time. Per
scenario: two-stage's time to the accuracy target over the best other exact scheme's, paired by
seed, with the verdict rule of the linear study; ignore-stragglers (inexact: it drops the s
slowest messages) shows what dropping stragglers costs in accuracy.
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

from mpicode.analysis.runs import read_run
from mpicode.config import Config, defaults
from mpicode.io import safefile
from mpicode.io.shipped import build_datasets, locate
from mpicode.io.shipped import data_dir as repo_data
from mpicode.io.traces import read_trace, write_trace
from mpicode.schemes import SCHEMES as REGISTERED
from mpicode.simulator import simulate
from studies import study
from studies.mlp_publish import cell_table

MODEL = {"model": "mlp", "hidden": "64", "optimizer": "adam", "lr": 0.01, "batch_size": 128,
         "workers": 4, "epochs": 10}
SCHEMES: dict[str, dict] = {
    "uncoded": {"scheme": "uncoded"},
    "frc": {"scheme": "frc", "stragglers_tolerated": 1},
    "cyclic": {"scheme": "cyclic", "stragglers_tolerated": 1},
    "self-scheduling": {"scheme": "self-scheduling"},
    "two-stage": {"scheme": "two-stage", "stragglers_tolerated": 1},
    "ignore-stragglers": {"scheme": "ignore-stragglers", "stragglers_tolerated": 1},
}
# seconds per partition (8 rows of a batch of 128 over 16 partitions, hidden 64): the median
# of Problem.partition_cost() on the project's 2-core machine, fixed so that every cell pays
# the same compute and a run is reproducible (a measurement per run would vary with the load)
PARTITION_COST_S = 1.2e-5
ACC_TARGET = 0.95  # test accuracy
LOSS_TARGET = 0.15  # test loss
SUBJECT = "two-stage"
METRICS = ("time_to_acc_s", "time_to_loss_s", "final_accuracy", "final_test_loss",
           "mean_iter_s", "iterations")


def digits(data_dir: Path) -> Path:
    build_datasets(data_dir, names=("digits",))
    return data_dir / "digits.h5"


def first_time(t_end: np.ndarray, ok: np.ndarray) -> float:
    """Virtual seconds at the end of the first iteration where ``ok`` holds (inf: never)."""
    hit = np.flatnonzero(ok)
    return float(t_end[hit[0]]) if hit.size else math.inf


def realised_trace(spec: str, seed: int, tmp: Path) -> str:
    """``trace:FILE`` for this seed: the trace realised as in the simulator study
    (:func:`studies.study.realise`), written next to the run."""
    src = locate(spec[len("trace:"):])
    rel, attrs = read_trace(str(src))
    out = tmp / f"{src.stem}-seed{seed}.h5"
    if not out.exists():
        r = study.realise(rel, seed)
        write_trace(str(out), r * float(attrs.get("median_s", 1.0)), r,
               dict(attrs, description=f"{src.name} realised for seed {seed}"))
    return "trace:" + str(out)


def measure(opts: dict, dataset: Path, out: Path, epochs: int) -> dict:
    """One simulated training run with real numerics; its metrics."""
    v = dict(defaults().values)
    v.update(MODEL, compute="real", dataset=str(dataset), quiet=True, out=str(out),
             force=True, delay_unit=0.02, epochs=epochs, partition_cost=PARTITION_COST_S)
    v.update(opts)
    if v["stragglers"].startswith("trace:"):
        v["stragglers"] = realised_trace(v["stragglers"], v["seed"], out.parent)
    if simulate(Config(v)) != 0:
        raise RuntimeError(f"mlp_study: simulate failed for {opts}")
    it = read_run(str(out))["iterations"]
    t_end, acc, tl = it["t_end"], it["accuracy"], it["test_loss"]
    return {"time_to_acc_s": first_time(t_end, acc >= ACC_TARGET),
            "time_to_loss_s": first_time(t_end, tl <= LOSS_TARGET),
            "final_accuracy": float(acc[-1]), "final_test_loss": float(tl[-1]),
            "mean_iter_s": float(np.mean(t_end - it["t_start"])), "iterations": int(len(acc))}


def cell_options(label: str, scen: str, seed: int) -> dict:
    return {**study.SCENARIOS[scen], **SCHEMES[label], "seed": seed}


def run(scenarios, schemes, seeds: int, epochs: int, dataset: Path, log=print) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpicode-mlp-") as tmp:
        for scen in scenarios:
            for label in study.available(schemes):
                per = [measure(cell_options(label, scen, 100 + k), dataset,
                               Path(tmp) / "run.h5", epochs) for k in range(seeds)]
                rows.append({"scenario": scen, "scheme": label,
                             **{m: [p[m] for p in per] for m in METRICS}})
            log(f"  mlp study: {scen}: {len(schemes)} schemes x {seeds} seeds")
    return rows


def compare(rows: list[dict], subject: str = SUBJECT) -> list[dict]:
    """Per scenario: the subject's time to the accuracy target over the best other exact
    scheme's (by mean over seeds), paired by seed, 95% CI and verdict (as in the study)."""
    by: dict[str, dict] = {}
    for r in rows:
        by.setdefault(r["scenario"], {})[r["scheme"]] = r
    out = []
    for scen, cells in by.items():
        others = {k: v for k, v in cells.items() if k != subject
                  and REGISTERED[SCHEMES[k]["scheme"]].exact
                  and np.isfinite(v["time_to_acc_s"]).all()}
        if subject not in cells or not others:
            continue
        best = min(others, key=lambda k: np.mean(others[k]["time_to_acc_s"]))
        a = np.asarray(cells[subject]["time_to_acc_s"])
        ratio = study._ci(a / np.asarray(others[best]["time_to_acc_s"]))
        out.append({"scenario": scen, "best_other": best, "ratio": ratio,
                    "verdict": study.verdict(ratio)})
    return out


def suite(quick: bool, log=print, data_dir: Path | None = None):
    """What ``make experiments`` runs: (rows, comparisons, meta)."""
    if quick:
        scenarios, schemes, seeds, epochs = (["shifted-exp", "trace-AR"],
                                             {k: SCHEMES[k] for k in ("uncoded", SUBJECT,
                                                                      "ignore-stragglers")},
                                             2, 3)
    else:
        scenarios, schemes, seeds, epochs = list(study.SCENARIOS), SCHEMES, 5, MODEL["epochs"]
    dataset = digits(data_dir or repo_data())
    t0 = time.perf_counter()
    rows = run(scenarios, schemes, seeds, epochs, dataset, log=log)
    meta = {"seeds": seeds, "epochs": epochs, "scenarios": scenarios,
            "schemes": list(study.available(schemes)), "model": dict(MODEL, epochs=epochs),
            "acc_target": ACC_TARGET, "loss_target": LOSS_TARGET, "dataset": "digits",
            "partition_cost_s": PARTITION_COST_S, "delay_unit": 0.02,
            "wall_s": time.perf_counter() - t0}
    return rows, compare(rows), meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.mlp_study",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 scenarios, 3 schemes, 2 seeds")
    p.add_argument("--data-dir", default=None, help="where digits.h5 is (built if missing)")
    p.add_argument("--json", default=None, metavar="FILE", help="write rows and comparisons")
    a = p.parse_args(argv)
    rows, cmp, meta = suite(a.quick, log=lambda s: print(s, file=sys.stderr, flush=True),
                            data_dir=Path(a.data_dir) if a.data_dir else None)
    print("\n".join(cell_table(rows)))
    for c in cmp:
        r = c["ratio"]
        print(f"{c['scenario']}: {SUBJECT} / {c['best_other']} time to accuracy "
              f"{ACC_TARGET}: {r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] {c['verdict']}")
    print(f"mlp study: {len(rows)} cells in {meta['wall_s']:.0f} s", file=sys.stderr)
    if a.json:
        safefile.write_text(a.json, json.dumps({"meta": meta, "rows": rows, "compare": cmp},
                                           indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
