"""Claim 2 with confidence intervals (studies.comm_study): the link time, the
verdict rule, lyapunov's airtime option through the configuration, and the quick study in
virtual time."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studies import comm_study as cs

pytestmark = pytest.mark.timeout(120)


class AnyK:
    """A stand-in scheme: any ``k`` of its tasks decode."""

    def __init__(self, n, k):
        self.tasks = {10 + i: None for i in range(n)}
        self.k = k

    def decodable_with(self, ids):
        return len(set(ids) & set(self.tasks)) >= self.k


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 10), st.just(math.inf)), min_size=1, max_size=12),
       st.integers(1, 12))
def test_link_s_is_the_earliest_decodable_prefix(ready, k):
    s = AnyK(len(ready), k)
    t_wait = 20.0
    got = cs.link_s(s, {"t_ready": ready}, t_wait)
    finite = sorted(x for x in ready if math.isfinite(x))
    if len(finite) < k:
        assert math.isnan(got)
    else:
        assert got == pytest.approx(t_wait - finite[k - 1])


def test_link_s_is_comm_s_for_uncoded():
    # uncoded needs every message: the used set is the ready set, both origins agree
    opts = cs.options("uncoded", "max-weight", 3, 4, quick=True)
    m = cs.simulate(opts, 4)
    assert m["mean_link_s"] == pytest.approx(m["mean_comm_s"])


def test_queue_weights_reach_lyapunov_through_the_configuration():
    from mpicode.models.channels import make_channel
    from mpicode.schedulers import make_scheduler
    cfg = cs.config(cs.options("cyclic", "lyapunov-airtime", 0, 2, quick=True), 4,
                    compute="none")
    s = make_scheduler(cfg, 4, make_channel(cfg, 4))
    assert s.queue_weights == "airtime"
    assert not np.allclose(s.c, 1.0)  # near/far: a far worker's queue weighs more
    cfg = cs.config(cs.options("cyclic", "lyapunov", 0, 2, quick=True), 4, compute="none")
    assert make_scheduler(cfg, 4, make_channel(cfg, 4)).queue_weights == "bytes"


def test_verdict_needs_the_interval_to_exclude_one():
    assert cs.verdict({"mean": 0.9, "lo": 0.85, "hi": 0.95}) == "holds"
    assert cs.verdict({"mean": 0.9, "lo": 0.8, "hi": 1.01}) == "tie"
    assert cs.verdict({"mean": 1.1, "lo": 1.02, "hi": 1.2}) == "does not hold"


def test_quick_study_in_virtual_time():
    rows, cmp, meta = cs.suite(quick=True, log=lambda s: None, mpi=False)
    p = cs.plan(True)
    assert {(r["scheme"], r["scheduler"]) for r in rows} == {
        (s, v) for s in p["schemes"] for v in p["variants"]}
    assert all(len(r["mean_iter_s"]) == p["seeds"] for r in rows)
    baselines = {c["baseline"] for c in cmp}
    assert set(cs.BASELINES) <= baselines and cs.SUBJECT not in baselines
    for c in cmp:
        for m in cs.METRICS:
            ci = c[m]["ratio"]
            assert ci["lo"] <= ci["mean"] <= ci["hi"]
            assert c[m]["verdict"] == cs.verdict(ci)
    assert meta["claim2"]["virtual"]["verdict"] in ("holds", "does not hold", "mixed")
    assert "mpi" not in meta["claim2"]
    # the same seed gives the same figures (virtual time is reproducible)
    again = cs.simulate(cs.options("two-stage", "lyapunov", 100, p["iterations"], True),
                        p["N"])
    first = next(r for r in rows if r["scheme"] == "two-stage" and r["scheduler"] == "lyapunov")
    assert again["mean_iter_s"] == first["mean_iter_s"][0]
    assert cs.table(cmp, "virtual")[0].startswith("| scheme |")
    md = cs.markdown(cmp, meta)
    assert "### virtual: claim 2" in md and "| two-stage | max-weight |" in md


def _cmp(block, scheme, base, lo, hi, jain=0.99, floor=True):
    ci = {"mean": (lo + hi) / 2, "lo": lo, "hi": hi}
    m = {"ratio": ci, "verdict": cs.verdict(ci), "subject": 1.0, "baseline": 1.0}
    return {"block": block, "scheme": scheme, "baseline": base, "subject": cs.SUBJECT,
            "seeds": 5, **{k: m for k in cs.METRICS}, "part_min": 0.9,
            "part_jain": {"mean": jain, "lo": jain, "hi": jain}, "floor_held": floor}


def test_claim2_from_the_study():
    from studies import verdicts
    good = [_cmp("virtual", s, b, 0.7, 0.9) for s in ("a", "b") for b in ("fifo", "round-robin")]
    tie = [_cmp("virtual", "a", "max-weight", 0.95, 1.05)]
    c = verdicts.claim2({}, study=good + tie)
    assert c["verdict"] == verdicts.HOLDS and "max-weight: 0 sooner, 1 tie" in c["plain"]
    mixed = good[:-1] + [_cmp("virtual", "b", "round-robin", 0.95, 1.05)]
    assert verdicts.claim2({}, study=mixed)["verdict"] == verdicts.MIXED
    unfair = [dict(x, floor_held=False) for x in good]
    assert verdicts.claim2({}, study=unfair)["verdict"] == verdicts.FAILS
    s = cs.summarise(good + tie, "virtual")
    assert s["verdict"] == "holds" and s["per_baseline"]["max-weight"]["time_to_target_s"] == [
        "tie"]
