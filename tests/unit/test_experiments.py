"""The experiment suite: the verdict rules on made-up numbers, and the quick suite end to end
(one ``mpiexec`` job of 5 ranks, the simulator sweep, tables, figures, README section)."""

import math

import pytest

from mpicode.experiments import publish, verdicts
from mpicode.experiments.suite import NONIID, SCHEMES

pytestmark = pytest.mark.timeout(240)


# -- rules ---------------------------------------------------------------------------------
def test_combine():
    assert verdicts.combine([True, True]) == verdicts.HOLDS
    assert verdicts.combine([False, False]) == verdicts.FAILS
    assert verdicts.combine([True, False]) == verdicts.MIXED
    assert verdicts.combine([]) == verdicts.FAILS


def _scheme_rows(two_stage_t, two_stage_load=1.2):
    rows = {k: {"t_acc": 10.0, "t_loss": 20.0, "mean_load": 1.0} for k in SCHEMES}
    rows["frc"].update(t_acc=8.0, t_loss=16.0, mean_load=2.0)
    rows["cyclic"].update(t_acc=9.0, t_loss=15.0, mean_load=2.0)
    rows["two-stage"].update(t_acc=two_stage_t, t_loss=2 * two_stage_t,
                             mean_load=two_stage_load)
    return rows


def test_claim1_rule():
    fast = {("a", "s"): _scheme_rows(5.0), ("b", "s"): _scheme_rows(6.0)}
    c = verdicts.claim1(fast)
    assert c["verdict"] == verdicts.HOLDS
    assert c["checks"][0]["speedup_loss"] == pytest.approx(1.5)
    slow = {("a", "s"): _scheme_rows(5.0), ("b", "s"): _scheme_rows(9.0)}
    c = verdicts.claim1(slow)  # (b): 9.0 s vs frc's 8.0 s on the accuracy target
    assert c["verdict"] == verdicts.MIXED and "b/s" in c["evidence"]
    heavy = {("a", "s"): _scheme_rows(5.0, two_stage_load=2.0)}
    assert verdicts.claim1(heavy)["verdict"] == verdicts.FAILS
    never = {("a", "s"): _scheme_rows(math.inf)}
    assert verdicts.claim1(never)["verdict"] == verdicts.FAILS


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
