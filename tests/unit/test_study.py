"""The seeded simulator comparison: cells run, ratios are paired by seed, verdicts need CIs."""

from mpicode.experiments import study


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
    from mpicode.experiments import study_publish as sp
    rows = study.run([4], 2, 2, scenarios=["bimodal"], placements=("shared",),
                     schemes={k: study.SCHEMES[k] for k in ("uncoded", "two-stage")},
                     log=lambda m: None)
    cmp = study.compare(rows)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{sp.START}\nold\n{sp.END}\nrest\n")
    meta = {"seeds": 2, "iterations": 2, "others": ["uncoded"]}
    sp.write(tmp_path, readme, rows, cmp, meta, "two-stage")
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro") and text.endswith("rest\n")
    assert "| bimodal | 4 | shared | uncoded |" in text and "of 1 cells" in text
    assert (tmp_path / "study.json").exists() and "## Every scheme" in (
        tmp_path / "study.md").read_text()
