"""``make experiments``: the fixed, seeded experiment suite that tests the project's claims.

::

    python -m studies                 # full suite -> results/, results/README.md
    python -m studies --quick --out /tmp/r --no-readme   # < 1 min, for tests
    python -m studies --only rivals --out /tmp/rivals    # issue 29's comparison

Steps: build the scikit-learn datasets (``OUT/datasets/``); run every MPI cell in ONE
``mpiexec -n N+1 python -m mpi4py -m studies.mpirun --inner`` job (straggler
traces first, then the scheme comparison (one seed, every dataset), the seeded MPI
comparison (``Suite.seeds`` straggler realisations, both placements), the scheduler and non-IID
comparisons, replaying them; one HDF5 run per cell in ``OUT/``); in the simulator, the seeded
scheme comparison (:mod:`~studies.study`) and the MLP on digits
(:mod:`~studies.mlp_study`); claim 2's seeded scheduler study
(:mod:`~studies.comm_study`: virtual time and one more MPI job); the scale sweep in
the simulator; then metrics, the verdict of each claim by the rules of
:mod:`studies.verdicts`, PNG figures, ``OUT/results.md``,
``OUT/summary.json`` and the sections of ``OUT/README.md`` (``--readme FILE``: another file)
between ``<!-- results:start -->`` and ``<!-- results:end -->`` (and the simulator studies'
markers). ``--analyse-only`` redoes the last steps from the runs in ``OUT``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import time
from pathlib import Path

from mpicode import launcher
from mpicode.analysis.runs import read_run
from mpicode.io import safefile
from mpicode.io.shipped import build_datasets  # noqa: F401  (old name, here)
from studies import (
    analyse,
    comm_study,
    figures,
    mlp_publish,
    mlp_study,
    publish,
    rivals,
    saturation,
    seeded,
    study,
    study_publish,
    sweep,
    verdicts,
)
from studies.suite import SEED, SWEEP_SCHEMES, Suite


def run_mpi(suite: Suite, out: Path, data_dir: Path, only: str | None = None) -> None:
    """The MPI job (every cell, or those of ``--only``), bounded by the launcher's timeout;
    its progress lines pass through."""
    args = ["studies.mpirun", "--inner", "--out", str(out), "--data-dir",
            str(data_dir)] + (["--quick"] if suite.quick else []) + (
            ["--only", only] if only else [])
    r = launcher.launch(args, suite.ranks, timeout_s=suite.mpiexec_timeout_s)
    if r.returncode:
        raise SystemExit(f"experiments: the MPI job failed (exit code {r.returncode})")


def machine(mpi_library: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(),
            "python": platform.python_version(), "mpi": mpi_library, "loadavg": load,
            "host": platform.node()}


def comm_claim(quick: bool, out: Path, analyse_only: bool) -> list[dict]:
    """Claim 2's seeded study (:mod:`studies.comm_study`, virtual time and an MPI
    block): run and saved in ``OUT/comm_study.{json,md}``, or read back with --analyse-only."""
    import json

    path = out / "comm_study.json"
    if analyse_only:
        return json.loads(path.read_text())["compare"] if path.exists() else []
    print("experiments: claim 2 with CIs (uplink schedulers; virtual time and MPI)", flush=True)
    rows, cmp, cm = comm_study.suite(quick, log=lambda m: print(m, flush=True))
    safefile.write_text(path, json.dumps({"rows": rows, "compare": cmp, "meta": cm}, indent=1,
                               default=float))
    safefile.write_text(out / "comm_study.md", comm_study.markdown(cmp, cm))
    return cmp


def decide(res: dict, min_n: int) -> list[dict]:
    """Every claim's verdict (claim 1 also for two-stage in the paper's shape)."""
    cmp = res["seeded"]["compare"]
    c1 = verdicts.claim1(cmp["two-stage"], "two-stage")
    c1b = verdicts.claim1(cmp["two-stage (paper)"], "two-stage (paper)")
    sorted_cases = {ds: rows for (ds, part), rows in res["noniid"].items() if part == "sorted"}
    out = [dict(c1, id="1"), dict(c1b, id="1b"),
           dict(verdicts.claim2(res["schedulers"], study=res.get("comm_study")), id="2"),
           dict(verdicts.claim3(sorted_cases), id="3"),
           dict(verdicts.claim4(res["sweep"]["rows"], res["sweep"]["notes"],
                                res["sweep"]["lstsq"], min_n), id="4")]
    return out


def targets16(res: dict) -> list[dict]:
    """Issue 16's MPI targets, decided like the claims."""
    sd = res["seeded"]
    return [dict(verdicts.target_vs_codes(sd["vs_codes"]), id="16a"),
            dict(verdicts.target_no_later(sd["compare"]["two-stage"]), id="16b")]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studies", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results", help="output directory (default results)")
    p.add_argument("--quick", action="store_true", help="a tiny suite (4 workers), for tests")
    p.add_argument("--readme", default=None,
                   help="the Markdown file whose generated sections to update (default "
                        "OUT/README.md: results/README.md, which the project README links)")
    p.add_argument("--no-readme", action="store_true", help="do not touch the README")
    p.add_argument("--analyse-only", action="store_true",
                   help="skip the runs: analyse the HDF5 runs already in --out")
    p.add_argument("--only", choices=["rivals"], default=None,
                   help="one part of the suite: 'rivals' runs the MPI cells of the seeded "
                        "comparison and the rivals' simulator half, and writes only "
                        "OUT/rivals.{json,md} (the README and the other results stay)")
    return p


def rivals_only(suite: Suite, out: Path, analyse_only: bool) -> int:
    """``--only rivals``: issue 29's comparison alone (the seeded MPI cells, then the
    simulator half), without redoing the hour-long simulator study."""
    if not analyse_only:
        data_dir = out / "datasets"
        build_datasets(data_dir)
        cells = suite.cells_for("rivals")
        print(f"experiments: {len(cells)} MPI cells of the seeded comparison on {suite.ranks} "
              f"ranks -> {out}/", flush=True)
        run_mpi(suite, out, data_dir, only="rivals")
    cache: dict = {}

    def read(name: str) -> dict:
        if name not in cache:
            cache[name] = read_run(str(out / f"{name}.h5"))
        return cache[name]

    rivals_claim(suite, out, {"seeded": seeded.analyse_all(suite, read)})
    return 0


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    t0 = time.perf_counter()
    started = _dt.datetime.now().astimezone()
    suite = Suite.make(a.quick)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.only == "rivals":
        return rivals_only(suite, out, a.analyse_only)
    if a.readme is None:
        a.readme = str(out / "README.md")
    data_dir = out / "datasets"
    load_at_start = machine("")["loadavg"]
    mpi_s = 0.0
    if not a.analyse_only:
        build_datasets(data_dir)
        print(f"experiments: {len(suite.cells())} MPI cells on {suite.ranks} ranks "
              f"({'quick' if suite.quick else 'full'} suite) -> {out}/", flush=True)
        t = time.perf_counter()
        run_mpi(suite, out, data_dir)
        mpi_s = time.perf_counter() - t
    print("experiments: seeded scheme comparison in the simulator (CIs)", flush=True)
    study_out = study.suite(suite.quick, log=lambda m: print(m, flush=True))
    print("experiments: MLP on digits in the simulator (CIs)", flush=True)
    mlp_out = mlp_study.suite(suite.quick, log=lambda m: print(m, flush=True),
                              data_dir=data_dir)
    comm_cmp = comm_claim(suite.quick, out, a.analyse_only)
    print("experiments: scale sweep in the simulator", flush=True)
    sw = sweep.run(suite.sweep_ns, SWEEP_SCHEMES, suite.sweep_iterations, suite.sweep_budget_s)

    cache: dict = {}

    def read(name: str) -> dict:
        if name not in cache:
            cache[name] = read_run(str(out / f"{name}.h5"))
        return cache[name]

    res = analyse.collect(suite, read)
    res["seeded"] = seeded.analyse_all(suite, read)
    res["comm_study"] = comm_cmp
    res["sweep"] = sw
    claims = decide(res, suite.sweep_fit_min_n)
    res["targets16"] = targets16(res)
    first = read(suite.cells()[0].name)["attrs"]
    meta = {"command": "python -m studies"
            + "".join(f" {x}" for x in (argv if argv is not None else sys.argv[1:])),
            "date": started.isoformat(timespec="seconds"),
            "machine": dict(machine(" ".join(str(first.get("mpi_library", "?")).split())),
                            loadavg=load_at_start),
            "workers": suite.workers, "seed": SEED, "seeds": suite.seeds,
            "seeded_dataset": suite.seeded_dataset, "delay_unit": suite.delay_unit,
            "comm_delay_unit": suite.comm_delay_unit, "quick": suite.quick,
            "mpi_wall_s": mpi_s, "runs": _runs_record(out, a, started, mpi_s)}
    meta["figures"] = figures.write_all(suite, read, res, out)
    meta["wall_s"] = time.perf_counter() - t0
    _publish(a, out, meta, claims, res, suite)
    _publish_simulated(a, out, study_out, mlp_out)
    rivals_claim(suite, out, res)
    saturation_table(suite, out)
    return 0


def _publish_simulated(a, out: Path, study_out, mlp_out) -> None:
    """The simulator studies' tables and README sections (two-stage, the MLP)."""
    rows, cmp, smeta = study_out
    study_publish.write(out, None if a.no_readme else Path(a.readme), rows, cmp, smeta,
                        study.SUBJECT)
    print(f"experiments: simulator comparison: {study.SUBJECT} {study_publish.tally(cmp)}")
    mlp_publish.write(out, None if a.no_readme else Path(a.readme), *mlp_out, mlp_study.SUBJECT)


def rivals_claim(suite, out: Path, res: dict) -> None:
    """The rivals (issue 29): the MPI half from the seeded comparison, the simulator half run
    here (N = 64 and 256); written to ``OUT/rivals.{json,md}``."""
    import json
    print("experiments: the rivals (partial-gc, hetero-gc, dropcompute) in the simulator",
          flush=True)
    rows, tab, head, meta = rivals.suite(suite.quick, log=lambda m: print(m, flush=True))
    meta["command"] = "python -m studies" + "".join(f" {x}" for x in sys.argv[1:])
    meta["loadavg"] = machine("")["loadavg"]
    mpi_rows = res["seeded"].get("rivals", [])
    safefile.write_text(out / "rivals.json", json.dumps(
        {"mpi": mpi_rows, "rows": rows, "table": tab, "headline": head, "meta": meta},
        indent=1, default=float))
    safefile.write_text(out / "rivals.md", rivals.markdown(tab, head, meta) + "\n"
                        + rivals.mpi_markdown(mpi_rows, suite.seeds, suite.workers))
    for h in head:
        print(f"rivals: {h['scenario']} N={h['N']} {h['placement']}: two-stage / partial-gc "
              f"{rivals._fmt(h['ratio'])} {h['verdict']}", flush=True)


def saturation_table(suite, out: Path) -> None:
    """Rank 0's saturation N per scheme (issue 23), in the simulator with the coordinator
    charged by the default profile: ``OUT/saturation.{md,json}``."""
    import json
    print("experiments: rank 0's saturation N per scheme in the simulator", flush=True)
    res = saturation.run(ns=saturation.QUICK_NS if suite.quick else saturation.NS,
                         log=lambda m: print(m, flush=True))
    safefile.write_text(out / "saturation.json", json.dumps(res, indent=1, default=float))
    safefile.write_text(out / "saturation.md", "# Rank 0's saturation N\n"
                        + "\n".join(saturation.section(res)) + "\n")


def _runs_record(out: Path, a, started, mpi_s: float) -> dict:
    """When and how long the MPI runs in ``OUT`` took: written by a full run
    (``OUT/mpi_run.json``), read back by --analyse-only so the header says where they came from."""
    import json
    path = out / "mpi_run.json"
    if a.analyse_only:
        return json.loads(path.read_text()) if path.exists() else {}
    rec = {"date": started.isoformat(timespec="seconds"), "mpi_wall_s": mpi_s,
           "quick": a.quick}
    safefile.write_text(path, json.dumps(rec))
    return rec


def _publish(a, out: Path, meta: dict, claims: list, res: dict, suite) -> None:
    safefile.write_text(out / "results.md", publish.results_md(meta, claims, res, suite))
    publish.write_json(out / "summary.json", {"meta": meta, "claims": claims,
                                              "target_rule": analyse.TARGET_RULE, **res})
    if not a.no_readme:
        readme = Path(a.readme)
        rel = os.path.relpath(out.resolve(), readme.resolve().parent)
        publish.write_readme(readme, publish.readme_section(meta, claims, rel, res))
    for c in claims + res["targets16"]:
        print(f"{'claim' if c in claims else 'target'} {c['id']}: {c['verdict'].upper()}: "
              f"{c['evidence']}")
    print(f"experiments: wrote {out}/results.md, summary.json, {len(meta['figures'])} figures "
          f"in {meta['wall_s']:.0f} s", flush=True)
