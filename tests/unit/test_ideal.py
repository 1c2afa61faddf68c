"""Slowdown versus ideal: the straggler-free replay (``ideal_s``), S, the fraction removed,
and the per-worker attribution, checked against their definitions.

    .venv/bin/python -m pytest -q tests/unit/test_ideal.py
"""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from mpicode import registry
from mpicode.config import defaults, validate_for_size
from mpicode.models.stragglers import make_straggler_model
from mpicode.schemes import make_scheme
from mpicode.simulator import Simulator, simulate

N = 6


def sim_rows(scheme, stragglers, iterations=6, real_delays=False, **kw):
    cfg = validate_for_size(defaults().replace(scheme=scheme, stragglers=stragglers,
                                               compute="none", partition_cost=1e-4,
                                               stragglers_tolerated=1, **kw), N)
    sc = make_scheme(cfg, N, cfg.partitions)
    model = make_straggler_model(cfg, N, cfg.partitions)
    sim = Simulator(sc, model, n_workers=N, partition_cost=1e-4,
                    ideal_delays=model if real_delays else None)
    return [sim.iteration(it)["row"] for it in range(iterations)]


@pytest.mark.parametrize("stragglers", ["shifted-exp", "bimodal", "exp-per-iteration"])
@pytest.mark.parametrize("scheme", sorted(registry.schemes()))
def test_a_replay_with_the_real_delays_is_the_iteration(scheme, stragglers):
    """The replay (a copy of the scheme loaded with its state at the iteration's start, the
    simulator's event loop) given the run's own delays reproduces every iteration's wait bit
    for bit: the state it starts from is complete, so with the delays removed it is the same
    run without stragglers."""
    for row in sim_rows(scheme, stragglers, real_delays=True):
        assert row["ideal_s"] == row["wait_s"], row["iteration"]


@pytest.mark.parametrize("scheme", ["uncoded", "two-stage", "partial-gc", "hetero-gc"])
def test_without_stragglers_the_ideal_is_the_run(scheme):
    for row in sim_rows(scheme, "none"):
        assert row["ideal_s"] == row["wait_s"]


def test_ideal_is_below_the_run_and_removes_only_straggling():
    rows = sim_rows("uncoded", "bimodal")
    for r in rows:  # uncoded: every worker at the fast speed: K/N partitions + one share
        assert r["ideal_s"] == pytest.approx(4 * 1e-4 + 0.01, rel=1e-12)
        assert r["wait_s"] >= r["ideal_s"]


def test_nominal_rates():
    cfg = defaults()
    for name, expect in [("bimodal", cfg.delay_unit), ("pareto", cfg.delay_unit),
                         ("exp-per-iteration", cfg.delay_unit),
                         ("shifted-exp", cfg.delay_unit * cfg.shift), ("none", 0.0)]:
        m = make_straggler_model(cfg.replace(stragglers=name), 4, 16)
        assert m.nominal_rate(3) == pytest.approx(expect)
        from mpicode.engine.ideal import _Nominal
        assert _Nominal(m).delay(3, 1, 0, 4) == pytest.approx(expect * 1.0 + m.overhead)


def _simulate(tmp_path, scheme, **kw) -> str:
    out = str(tmp_path / f"{scheme}.h5")
    cfg = defaults().replace(scheme=scheme, stragglers="bimodal", workers=N, iterations=8,
                             out=out, quiet=True, progress="none", seed=3, **kw)
    assert simulate(cfg) == 0
    return out


def _by_hand(path):
    """S from the raw columns, with nothing of mpicode.analysis."""
    with h5py.File(path, "r") as f:
        n = int(f.attrs["n_done"])
        it = {k: f[f"iterations/{k}"][:n] for k in ("t_start", "t_end", "wait_s", "ideal_s")}
    dur = it["t_end"] - it["t_start"]
    return dur.sum() / (dur - it["wait_s"] + it["ideal_s"]).sum()


def test_S_and_removed_from_the_logs_match_the_report(tmp_path):
    """S = sum(t_end - t_start) / sum(t_end - t_start - wait_s + ideal_s) and the removed
    fraction (S_uncoded - S) / (S_uncoded - 1), computed here from the HDF5 columns alone,
    equal what ``mpicode report --format json`` prints, to 1e-9."""
    from mpicode.analysis.report import render
    paths = [_simulate(tmp_path, s) for s in ("uncoded", "two-stage", "partial-gc",
                                              "hetero-gc")]
    rows = {r["scheme"]: r for r in json.loads(render(paths, fmt="json", notes=[]))}
    s_unc = _by_hand(paths[0])
    assert s_unc > 1.5   # bimodal slows uncoded down
    for p in paths:
        with h5py.File(p, "r") as f:
            scheme = str(f.attrs["scheme"])
        s = _by_hand(p)
        assert abs(rows[scheme]["S"] - s) <= 1e-9 * s
        want = (s_unc - s) / (s_unc - 1)
        assert abs(rows[scheme]["removed"] - want) <= 1e-9
    assert rows["uncoded"]["removed"] == 0.0


def test_removed_needs_the_same_scenario(tmp_path):
    """An uncoded run of another scenario (another seed) is no baseline: removed is NaN."""
    from mpicode.analysis.report import render
    a = _simulate(tmp_path, "two-stage")
    b = str(tmp_path / "u.h5")
    assert simulate(defaults().replace(scheme="uncoded", stragglers="bimodal", workers=N,
                                       iterations=8, out=b, quiet=True, progress="none",
                                       seed=4)) == 0
    rows = json.loads(render([a, b], fmt="json", notes=[]))
    assert rows[0]["removed"] is None   # NaN in strict JSON


def test_attribution_shares_add_to_one_and_name_the_slow_workers(tmp_path):
    from mpicode.analysis import slowdown
    from mpicode.models.stragglers import Bimodal
    p = _simulate(tmp_path, "uncoded")
    rows = slowdown.attribution(p)
    shares = np.array([r["slowdown_share"] for r in rows])
    assert abs(shares.sum() - 1) < 1e-12
    cfg = defaults().replace(stragglers="bimodal", seed=3)
    slow = make_straggler_model(cfg, N, cfg.partitions)
    assert isinstance(slow, Bimodal)
    # uncoded: only the slow set runs past the ideal (everyone else is at the ideal speed)
    assert set(np.flatnonzero(shares > 0)) == set(np.flatnonzero(slow.slow))
    ex = slowdown.worker_excess(p)
    with h5py.File(p, "r") as f:   # by hand: finish of the one task minus the ideal
        n = int(f.attrs["n_done"])
        ideal = f["iterations/ideal_s"][:n]
        w = f["tasks/worker"][:]
        td = f["tasks/t_done"][:]
        itn = f["tasks/iteration"][:]
    for i in range(n):
        for k in range(N):
            t = td[(itn == i) & (w == k)]
            assert ex[i, k] == pytest.approx(max(0.0, t.max() - ideal[i]), abs=1e-12)


def test_report_table_shows_S_and_removed(tmp_path):
    from mpicode.analysis.report import render
    paths = [_simulate(tmp_path, s) for s in ("uncoded", "two-stage")]
    text = render(paths)
    head = text.splitlines()[0].split()
    assert "S" in head and "removed" in head
    text = render(paths, workers=True, fmt="csv", notes=[])
    assert "slowdown_share" in text.splitlines()[0]


def test_attribution_figure_respects_groups(tmp_path):
    pytest.importorskip("matplotlib")
    from mpicode.analysis import plots
    from mpicode.analysis.report import read_run
    runs = [read_run(_simulate(tmp_path, s)) for s in ("uncoded", "two-stage")]
    out = plots.slowdown_attribution(runs, tmp_path / "a.png",
                                          groups=[("scheme=all", runs)])
    assert out.endswith("a.png") and (tmp_path / "a.png").stat().st_size > 0
    assert math.isfinite(runs[0]["iterations"]["ideal_s"][0])
