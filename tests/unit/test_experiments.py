"""The experiment suite: the verdict rules on made-up numbers, and the quick suite end to end
(one ``mpiexec`` job of 5 ranks, the simulator sweep, tables, figures, README section)."""

import math

import numpy as np
import pytest

from mpicode.stats import mean_ci
from studies import publish, seeded, verdicts
from studies.suite import EXACT, FIXED, NONIID, SCENARIOS, Suite

pytestmark = pytest.mark.timeout(240)


# -- rules ---------------------------------------------------------------------------------
def test_combine():
    assert verdicts.combine([True, True]) == verdicts.HOLDS
    assert verdicts.combine([False, False]) == verdicts.FAILS
    assert verdicts.combine([True, False]) == verdicts.MIXED
    assert verdicts.combine([]) == verdicts.FAILS


def _case(ts_loss, others=None, ts_load=1.2, seeds=5):
    """One (scenario, placement) case: two-stage's per-seed times to the loss target and
    every baseline's (frc/cyclic at load 2)."""
    rng = np.random.default_rng(0)
    base = others or {"uncoded": 12.0, "frc": 11.0, "cyclic": 10.0, "speed-aware": 9.0,
                      "self-scheduling": 8.0}
    rows = {}
    for label, t in {**base, "two-stage (paper)": 9.5}.items():
        v = t + rng.normal(0, 0.05, seeds)
        rows[label] = {"t_loss": list(v), "t_acc": list(v / 2), "mean_iter_s": list(v / 16),
                       "p95_iter_s": list(v / 10), "mean_load": [2.0 if label in
                                                                ("frc", "cyclic") else 1.0]
                       * seeds}
    v = np.atleast_1d(np.asarray(ts_loss, float))
    v = v if v.size == seeds else v[0] + rng.normal(0, 0.05, seeds)
    rows["two-stage"] = {"t_loss": list(v), "t_acc": list(v / 2), "mean_iter_s": list(v / 16),
                         "p95_iter_s": list(v / 10), "mean_load": [ts_load] * seeds}
    for r in rows.values():
        r["vs_oracle"] = list(np.asarray(r["mean_iter_s"]) / 0.02)
    return rows


def test_paired_ratio_ci():
    r = seeded.ratio_ci([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])  # paired: every ratio is 2
    assert r["mean"] == pytest.approx(2.0) and r["lo"] == pytest.approx(2.0)
    assert r["hi"] == pytest.approx(2.0) and r["n"] == 3
    # unpaired means would give 2 too, but the spread of the ratios sets the interval
    r = seeded.ratio_ci([1.0, 1.2, 0.8, 1.1, 0.9], [1.0] * 5)
    m, lo, hi = mean_ci([1.0, 1.2, 0.8, 1.1, 0.9])
    assert (r["mean"], r["lo"], r["hi"]) == pytest.approx((m, lo, hi))
    assert seeded.direction(r) == "tie"
    assert seeded.direction(seeded.ratio_ci([0.8, 0.82, 0.79], [1, 1, 1])) == "faster"
    assert seeded.direction(seeded.ratio_ci([1.3, 1.2, 1.25], [1, 1, 1])) == "slower"
    never = seeded.ratio_ci([math.inf, 1.0], [1.0, 1.0])  # a target never reached: no verdict
    assert math.isnan(never["mean"]) and seeded.direction(never) == "n/a"
    with pytest.raises(ValueError):
        seeded.ratio_ci([1.0, 2.0], [1.0])


def test_compare_picks_best_baseline_by_mean():
    cases = {("s", "shared"): _case(6.0)}
    (c,) = seeded.compare(cases)
    assert c["best_loss"] == "self-scheduling" and c["verdict"] == "faster"
    assert c["t_loss"]["mean"] == pytest.approx(0.75, abs=0.02)
    assert c["codes_load"] == 2.0 and c["seeds"] == 5
    # the paper's shape is not a baseline of two-stage, nor two-stage of the paper's shape
    (p,) = seeded.compare(cases, "two-stage (paper)")
    assert p["best_loss"] == "self-scheduling" and p["verdict"] == "slower"
    (v,) = seeded.vs_codes({("s", "replicated:2"): _case(6.0)})
    assert v["best_code"] == "cyclic" and v["speedup"]["mean"] == pytest.approx(10 / 6, 0.02)
    assert seeded.vs_codes(cases) == []  # only the replicated placement counts


def test_claim1_rule_needs_the_interval_below_one():
    cases = {("a", "shared"): _case(6.0), ("b", "shared"): _case(7.0)}
    c = verdicts.claim1(seeded.compare(cases))
    assert c["verdict"] == verdicts.HOLDS and "a/shared" in c["evidence"]
    # b: 7.9 against self-scheduling's 8.0 with a seed-to-seed spread: the CI contains 1
    tie = {("a", "shared"): _case(6.0), ("b", "shared"): _case([7.0, 8.5, 7.4, 8.6, 8.0])}
    c = verdicts.claim1(seeded.compare(tie))
    assert c["verdict"] == verdicts.MIXED and c["checks"][1]["verdict"] == "tie"
    assert "b/shared" in c["plain"]
    # a faster scheme that is not lighter than frc and cyclic does not pass
    heavy = {("a", "shared"): _case(6.0, ts_load=2.0)}
    assert verdicts.claim1(seeded.compare(heavy))["verdict"] == verdicts.FAILS
    # slower than speed-aware when self-scheduling is absent
    slow = {("a", "replicated:2"): _case(9.5, {"uncoded": 12.0, "frc": 11.0, "cyclic": 10.0,
                                               "speed-aware": 9.0})}
    c = verdicts.claim1(seeded.compare(slow))
    assert c["verdict"] == verdicts.FAILS and c["checks"][0]["best_loss"] == "speed-aware"
    never = {("a", "shared"): _case([math.inf, 6, 6, 6, 6])}
    assert verdicts.claim1(seeded.compare(never))["verdict"] == verdicts.FAILS


def test_issue16_targets():
    rep = {("a", "replicated:2"): _case(6.0), ("b", "replicated:2"): _case(9.0)}
    t = verdicts.target_vs_codes(seeded.vs_codes(rep))
    # a: 10 / 6 = 1.67x (met); b: 10 / 9 = 1.11x, the whole interval below 1.2 (missed)
    assert t["verdict"] == verdicts.MIXED
    assert [c["status"] for c in t["checks"]] == ["met", "missed"]
    wide = {("a", "replicated:2"): _case([7.0, 9.5, 8.0, 9.8, 8.3])}
    (c,) = verdicts.target_vs_codes(seeded.vs_codes(wide))["checks"]
    assert c["status"] == "within the CI" and not c["pass"]
    # no later than the best other, within the interval: a tie passes, a clear loss fails
    cases = {("a", "shared"): _case([7.0, 8.5, 7.4, 8.6, 8.0]), ("b", "shared"): _case(9.0)}
    t = verdicts.target_no_later(seeded.compare(cases))
    assert [c["pass"] for c in t["checks"]] == [True, False]
    assert t["verdict"] == verdicts.MIXED


def test_seeded_cells():
    s = Suite.make(quick=False)
    cells = s.cells()
    names = [c.name for c in cells]
    assert len(names) == len(set(names))
    by = {c.name: c for c in cells}
    traces = {c.name: c for c in cells if c.group == "traces"}
    for scen in SCENARIOS:
        seeds = {traces[s.trace_name(scen, k)].options["seed"] for k in range(s.seeds)}
        assert len(seeds) == s.seeds >= 5  # one recording per realisation
        for k in range(s.seeds):
            for label, pl in s.variants():
                cell = by[s.seeded_name(scen, k, label, pl)]  # every seeded cell is run
                assert cell.trace == s.trace_name(scen, k)
                assert cell.options["iterations"] == s.iterations
                assert cell.options.get("placement", "shared") == (
                    "shared" if pl == FIXED else pl)
                assert cell.labels["dataset"] == s.seeded_dataset
    # every exact scheme, the flexible ones under both placements
    assert {lab for lab, _ in s.variants()} == set(EXACT) >= {
        "uncoded", "frc", "cyclic", "speed-aware", "self-scheduling", "two-stage",
        "two-stage (paper)"}
    assert ("two-stage", "replicated:2") in s.variants()
    assert ("frc", FIXED) in s.variants() and ("frc", "shared") not in s.variants()
    assert s.workers == 8



@pytest.mark.parametrize("quick", [True, False])
def test_only_rivals_runs_what_the_seeded_comparison_reads_and_nothing_else(quick):
    """``--only rivals``: every run the seeded comparison reads is in the job, each after the
    trace it replays; no scheduler, non-IID or other-dataset cell is."""
    s = Suite.make(quick=quick)
    job = s.cells_for("rivals")
    order = {c.name: k for k, c in enumerate(job)}
    assert [c.name for c in s.cells_for(None)] == [c.name for c in s.cells()]
    for scen in SCENARIOS:
        for k in range(s.seeds):
            for label, pl in s.variants():
                cell = job[order[s.seeded_name(scen, k, label, pl)]]
                assert order[cell.trace] < order[cell.name]
    assert {c.group for c in job} == {"traces", "schemes", "seeded"}
    assert all(c.labels.get("dataset", s.seeded_dataset) == s.seeded_dataset for c in job)
    assert "trace-comm" not in order and len(job) < len(s.cells())
    with pytest.raises(ValueError):
        s.cells_for("everything")

def _sched(ly_comm, ly_bytes, jain):
    base = {"mean_comm_s": 0.1, "bytes_per_slot": 1000.0, "jain_participation": 1.0,
            "min_participation": 1.0}
    return {"fifo": dict(base), "round-robin": dict(base, mean_comm_s=0.09),
            "max-weight": dict(base),
            "lyapunov": dict(base, mean_comm_s=ly_comm, bytes_per_slot=ly_bytes,
                             jain_participation=jain, min_participation=jain)}


def test_claim2_rule():
    assert verdicts.claim2({"x": _sched(0.05, 2000.0, 0.99)})["verdict"] == verdicts.HOLDS
    # slower than round-robin (0.09)
    c = verdicts.claim2({"x": _sched(0.05, 2000.0, 0.99), "y": _sched(0.095, 2000.0, 0.99)})
    assert c["verdict"] == verdicts.MIXED
    # unfair
    assert verdicts.claim2({"x": _sched(0.05, 2000.0, 0.5)})["verdict"] == verdicts.FAILS


def test_claim3_rule():
    def rows(ign, ts):
        r = {v: {"final_acc": 0.9, "final_loss": 0.3} for v in NONIID}
        for v in ("ignore-stragglers s=1", "ignore-stragglers s=2"):
            r[v]["final_acc"] = ign
        for v in ("two-stage", "two-stage + fair admission"):
            r[v]["final_acc"] = ts
        return r
    assert verdicts.claim3({"d": rows(0.8, 0.9)})["verdict"] == verdicts.HOLDS
    assert verdicts.claim3({"d": rows(0.8, 0.9), "e": rows(0.9, 0.9)})["verdict"] == \
        verdicts.MIXED
    assert verdicts.claim3({"d": rows(0.9, 0.8)})["verdict"] == verdicts.FAILS


def test_claim4_rule():
    ns = [64, 128, 256, 512, 1024]
    lin = [{"scheme": "two-stage", "N": n, "policy_s": 1e-5 * n, "uncovered": n / 2}
           for n in ns]
    cub = [{"scheme": "cyclic", "N": n, "policy_s": 1e-9 * n ** 3, "decode_s": 1e-9 * n ** 3,
            "uncovered": 0} for n in ns[:3]]
    solve = [{"N": n, "lstsq_s": 1e-9 * n ** 3} for n in ns]
    c = verdicts.claim4(lin + cub, [], solve)
    assert c["verdict"] == verdicts.HOLDS
    assert c["slopes"]["two-stage_vs_U"] == pytest.approx(1.0)
    assert c["slopes"]["cyclic_solve_vs_N"] == pytest.approx(3.0)
    assert c["slopes"]["cyclic_decode_vs_N"] == pytest.approx(3.0)
    quad = [dict(r, policy_s=1e-7 * r["N"] ** 2) for r in lin]
    assert verdicts.claim4(quad + cub, [], solve)["verdict"] == verdicts.MIXED
    flat = [dict(r, lstsq_s=1e-6 * r["N"]) for r in solve]
    assert verdicts.claim4(quad + cub, [], flat)["verdict"] == verdicts.FAILS


def test_readme_section_replaced_in_place(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nintro\n\n## Other\n\ntext\n")
    publish.write_readme(readme, f"{publish.START}\none\n{publish.END}")
    text = readme.read_text()
    assert text.startswith("# x\n\nintro\n\n## Other\n\ntext\n") and "## Results" in text
    readme.write_text(text + "\n## After\n\nkept\n")
    publish.write_readme(readme, f"{publish.START}\ntwo\n{publish.END}")
    text = readme.read_text()
    assert "one" not in text and "two" in text and text.count("## Results") == 1
    assert text.endswith("## After\n\nkept\n")


# -- the quick suite end to end ------------------------------------------------------------


def test_vs_oracle_of_a_run():
    it = {"t_start": np.array([0.0, 1.0, 3.0, 9.0]), "t_end": np.array([1.0, 3.0, 6.0, 9.5]),
          "oracle_s": np.array([0.5, 1.0, 1.5, np.nan])}
    # 3 valid rows: mean 2 s against a mean oracle of 1 s
    assert seeded.vs_oracle({"iterations": it, "n": 3}) == pytest.approx(2.0)
    # the 4th row has no oracle value: it is left out of both means
    assert seeded.vs_oracle({"iterations": it, "n": 4}) == pytest.approx(2.0)
    assert math.isnan(seeded.vs_oracle({"iterations": {"t_start": it["t_start"],
                                                        "t_end": it["t_end"]}, "n": 3}))


def test_seeded_tables_show_the_intervals():
    import json
    cases = {("s", "shared"): _case(6.0), ("s", "replicated:2"): _case(9.0)}
    sd = {"cases": cases, "rows": seeded.table_rows(cases), "seeds": 5, "dataset": "d",
          "iterations": 20, "vs_codes": seeded.vs_codes(cases),
          "compare": {s: seeded.compare(cases, s) for s in seeded.SUBJECTS}}
    text = "\n".join(publish.seeded_section(sd, full=True))
    c = sd["compare"]["two-stage"][0]["t_loss"]
    assert f"{c['mean']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]" in text
    assert "| s | shared | self-scheduling |" in text and "| faster |" in text
    assert "| s | replicated:2 | self-scheduling |" in text and "| slower |" in text
    assert text.count("| s | shared |") == 1 + len(cases["s", "shared"])  # + every scheme
    json.dumps(publish.jsonable(sd))  # tuple keys and NaNs survive the summary


def test_header_says_where_the_mpi_runs_of_an_analyse_only_pass_came_from():
    from studies import publish
    machine = {"platform": "p", "cpu": "c", "cpus": 2, "loadavg": "0", "python": "3.11",
               "mpi": "MPICH"}
    base = {"machine": machine, "date": "2026-12-01T13:00:00", "wall_s": 120.0,
            "workers": 8, "seed": 7, "delay_unit": 0.02, "comm_delay_unit": 0.005}
    full = publish.header_lines(dict(base, command="python -m studies",
                                     mpi_wall_s=600.0))[0]
    assert "of which the MPI job 10.0 min" in full
    again = publish.header_lines(dict(
        base, command="python -m studies --analyse-only", mpi_wall_s=0.0,
        runs={"date": "2026-12-01T12:05:15", "mpi_wall_s": 516.8}))[0]
    assert "the MPI runs of 2026-12-01T12:05:15 (MPI job 8.6 min)" in again
    assert "of which the MPI job 0.0" not in again
