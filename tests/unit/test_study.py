"""The seeded simulator comparison: cells run, ratios are paired by seed, verdicts need CIs."""

import numpy as np
import pytest

from studies import study


def test_compare_pairs_by_seed_and_needs_the_interval_to_exclude_one():
    def row(scheme, times):
        return {"scenario": "s", "N": 8, "placement": "shared", "scheme": scheme,
                "mean_iter_s": times, "p95_iter_s": times, "load": [1.0] * len(times),
                "msgs_per_worker": [1.0] * len(times), "oracle_s": [0.5] * len(times)}
    rows = [row("two-stage", [1.0, 1.1, 1.2]), row("uncoded", [2.0, 4.1, 5.9]),
            row("frc", [3.0, 3.0, 3.0])]
    (c,) = study.compare(rows)
    assert c["best_other"] == "frc"  # the best other scheme by mean over seeds (3.0 < 4.0)
    assert c["verdict"] == "faster" and c["ratio"]["hi"] < 1
    rows[0]["mean_iter_s"] = [2.0, 3.0, 4.5]  # ratio to frc 0.67, 1.0, 1.5: the CI spans 1
    (c,) = study.compare(rows)
    assert c["verdict"] == "tie"
    assert study.verdict({"mean": 1.0, "lo": 0.9, "hi": 1.1}) == "tie"
    assert study.verdict({"mean": 1.2, "lo": 1.1, "hi": 1.3}) == "slower"


def test_a_cell_runs_and_placement_applies_to_flexible_schemes_only():
    assert "placement" not in study.cell_options("frc", "bimodal", "replicated:2", 1)
    assert study.cell_options("two-stage", "bimodal", "replicated:2", 1)["placement"] == \
        "replicated:2"
    m = study.measure(study.cell_options("two-stage", "shifted-exp", "shared", 3), 4, 3)
    assert m["mean_iter_s"] > 0 and m["load"] >= 1.0 and m["msgs_per_worker"] >= 1.0


def test_publish_tables_and_readme_section(tmp_path):
    from studies import study_publish as sp
    rows = study.run([4], 2, 2, scenarios=["bimodal"], placements=("shared",),
                     schemes={k: study.SCHEMES[k] for k in ("uncoded", "two-stage")},
                     log=lambda m: None)
    cmp = study.compare(rows)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{sp.START}\nold\n{sp.END}\nrest\n")
    coded = [{"scenario": "bimodal", "N": 4, "placement": "replicated:2", "best_coded": "frc",
              "subject_s": study._ci([1.0, 1.0]), "best_coded_s": study._ci([2.0, 2.0]),
              "speedup": study._ci([2.0, 2.0]), "target": 1.2, "verdict": "met"}]
    meta = {"seeds": 2, "iterations": {4: 2}, "others": ["uncoded"], "coded": coded,
            "not_run": {"self-scheduling replicated:2 at N >= 4": "too slow"}}
    sp.write(tmp_path, readme, rows, cmp, meta, "two-stage")
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro") and text.endswith("rest\n")
    assert "| bimodal | 4 | shared | uncoded |" in text and "of 1 cells" in text
    assert "| bimodal | 4 | frc | 2.0000 | 1.0000 | 2.00 [2.00, 2.00] | met |" in text
    assert "1 met, 0 inconclusive, 0 missed" in text
    assert "2 iterations at N = 4, timing-only" in text
    assert "Not run: self-scheduling replicated:2 at N >= 4 (too slow)" in text
    assert (tmp_path / "study.json").exists() and "## Every scheme" in (
        tmp_path / "study.md").read_text()


def _row(scheme, times, placement="replicated:2", N=8, scen="s"):
    return {"scenario": scen, "N": N, "placement": placement, "scheme": scheme,
            "mean_iter_s": times, "p95_iter_s": times, "load": [1.0] * len(times),
            "msgs_per_worker": [1.0] * len(times), "oracle_s": [0.5] * len(times)}


def test_compare_coded_takes_the_best_of_frc_and_cyclic_paired_by_seed():
    rows = [_row("two-stage", [1.0, 1.0, 1.0]), _row("frc", [1.5, 1.5, 1.5]),
            _row("cyclic", [2.0, 2.1, 1.9]), _row("self-scheduling", [0.1, 0.1, 0.1]),
            _row("frc", [9.0, 9.0, 9.0], placement="shared")]  # other placements: ignored
    (c,) = study.compare_coded(rows)
    assert c["best_coded"] == "frc" and c["placement"] == "replicated:2"
    assert c["speedup"]["mean"] == 1.5 and c["verdict"] == "met"  # 1.5x sooner, >= 1.2
    rows[1]["mean_iter_s"] = [1.1, 1.1, 1.1]
    assert study.compare_coded(rows)[0]["verdict"] == "missed"  # 1.1 < 1.2, a zero-width CI
    rows[1]["mean_iter_s"] = [1.0, 1.2, 1.6]  # speedups 1.0, 1.2, 1.6: the CI spans 1.2
    assert study.compare_coded(rows)[0]["verdict"] == "inconclusive"
    assert study.target_verdict({"lo": 1.2, "hi": 1.3}, 1.2) == "met"


def test_trace_realisations_keep_the_values_and_differ_by_seed():
    m = np.arange(12.0).reshape(4, 3)
    a, b = study.realise(m, 1), study.realise(m, 2)
    np.testing.assert_array_equal(a, study.realise(m, 1))  # seeded
    assert sorted(a.ravel()) == sorted(m.ravel()) and a.shape == m.shape
    # each row is a row of m (a rotation of the steps), each column a column (relabelled)
    assert all(any(set(r) == set(x) for x in m) for r in a)
    assert not np.array_equal(a, b) or not np.array_equal(a, study.realise(m, 3))


def test_trace_scenario_cells_run_on_the_shipped_trace_realised_per_seed():
    from mpicode.io import shipped
    assert study.SCENARIOS["trace-SE"]["stragglers"] == "trace:data/trace-SE.h5"
    cfg = study.config(study.cell_options("uncoded", "trace-AR", "shared", 100), 8)
    path = cfg.stragglers[len("trace:"):]
    assert path == str(shipped.data_dir() / "trace-AR.h5") and shipped.locate(path).exists()
    m = study.straggler_model(cfg, 8, cfg.partitions)
    f = [[m.factor(t, w) for w in range(8)] for t in range(3)]
    assert f[0][:4] == f[0][4:]  # tiled: 4 trace workers replayed twice at N = 8
    cfg2 = study.config(study.cell_options("uncoded", "trace-AR", "shared", 101), 8)
    m2 = study.straggler_model(cfg2, 8, cfg2.partitions)
    assert f != [[m2.factor(t, w) for w in range(8)] for t in range(3)]
    one = study.measure(study.cell_options("two-stage", "trace-SE", "shared", 100), 8, 3)
    assert one["oracle_s"] > 0 and 1.0 <= one["mean_iter_s"] / one["oracle_s"] < 3.0


def test_too_slow_cells_are_skipped_and_said_and_fixed_cells_run_once(monkeypatch):
    monkeypatch.setitem(study.TOO_SLOW, ("speed-aware", "replicated:2"), (4, "slow here"))
    calls = []
    real = study.measure
    monkeypatch.setattr(study, "measure",
                        lambda opts, N, its: calls.append(opts["scheme"]) or real(opts, N, its))
    schemes = {k: study.SCHEMES[k] for k in ("uncoded", "speed-aware", "two-stage")}
    rows = study.run([4], 2, {4: 2}, scenarios=["bimodal"], schemes=schemes,
                     log=lambda m: None)
    got = {(r["placement"], r["scheme"]) for r in rows}
    assert ("replicated:2", "speed-aware") not in got and ("shared", "speed-aware") in got
    assert calls.count("uncoded") == 2  # 2 seeds, once for both placements
    by = {(r["placement"], r["scheme"]): r for r in rows}
    assert by["shared", "uncoded"]["mean_iter_s"] == by["replicated:2", "uncoded"]["mean_iter_s"]
    c = {x["placement"]: x for x in study.compare(rows)}
    assert "speed-aware" in c["replicated:2"]["not_run"] and not c["shared"]["not_run"]


def test_shipped_traces_are_built_like_make_data(tmp_path):
    from mpicode.config import UsageError
    from mpicode.io import shipped
    from mpicode.io.traces import read_trace
    p = shipped.ensure("SE", tmp_path)
    rel, attrs = read_trace(str(p))
    assert rel.shape == (43, 32) and "Apache-2.0" in attrs["license"]
    assert "Apache License" in attrs["license_text"]
    assert shipped.ensure("SE", tmp_path) == p  # kept
    assert shipped.resolve(str(p)) == p and shipped.resolve("data/x.h5").is_absolute()
    with pytest.raises(UsageError, match="not found"):
        shipped.ensure("XX", tmp_path)
