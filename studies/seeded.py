"""The seeded MPI comparison: per-seed metrics, ratios paired by seed, 95% intervals (pure).

Input: the runs of the suite's seeded comparison (``Suite.seeded_name``: realisation 0 under
the default placement is the one-seed ``schemes`` cell of the seeded dataset). Per (scenario,
seed) the targets follow :data:`studies.analyse.TARGET_RULE` over that seed's
runs (all exact, so the loss trajectory is the same for every scheme and every run meets the
loss target at the same iteration: time to it is that many iterations on the run's one clock).
Per (scenario, placement) every exact scheme's per-seed values; frc, cyclic and uncoded have a
fixed layout and appear in both placements' comparisons. A ratio is formed per seed (the same
straggler realisation on both sides) and summarised by its mean and 95% Student-t interval
(:func:`mpicode.stats.mean_ci`); a direction ("faster"/"slower") is named only when the
interval excludes the threshold.
"""

from __future__ import annotations

import math

import numpy as np

from mpicode.analysis import slowdown
from mpicode.stats import ci_dict as ci
from studies import analyse
from studies.suite import EXACT, FIXED, PLACEMENTS

METRICS = ("t_loss", "t_acc", "mean_iter_s", "p95_iter_s", "mean_load", "vs_oracle", "S",
           "msgs_per_worker")
SUBJECTS = ("two-stage", "two-stage (paper)")
# claim 1's baselines: every exact scheme that is not a two-stage variant
BASELINES = tuple(k for k in EXACT if not k.startswith("two-stage"))
CODES = ("frc", "cyclic")


def collect(suite, read) -> dict:
    """{(scenario, placement): {label: {metric: [one value per seed]}}}."""
    cases: dict = {}
    for scen in suite.scenarios():
        for k in range(suite.seeds):
            runs = {(label, pl): read(suite.seeded_name(scen, k, label, pl))
                    for label, pl in suite.variants()}
            _, rows = analyse.scheme_case(runs, list(runs))
            for (label, pl), m in rows.items():
                m["vs_oracle"] = vs_oracle(runs[label, pl])
                m["S"] = slowdown.slowdown(runs[label, pl])
                m["msgs_per_worker"] = msgs_per_worker(runs[label, pl])
                for place in PLACEMENTS if pl == FIXED else (pl,):
                    d = cases.setdefault((scen, place), {}).setdefault(
                        label, {x: [] for x in METRICS})
                    for x in METRICS:
                        d[x].append(float(m[x]))
    return cases


def msgs_per_worker(run: dict) -> float:
    """Result messages that reached rank 0 before the decode, per worker and iteration."""
    tk, n, N = run["tasks"], run["n"], int(run["attrs"].get("n_workers", 0))
    if not tk or "cancelled" not in tk or not n or not N:
        return math.nan
    keep = np.asarray(tk["iteration"]) < n
    return float(np.sum(np.asarray(tk["cancelled"])[keep] == 0)) / (n * N)


def vs_oracle(run: dict) -> float:
    """Mean iteration time / mean clairvoyant-oracle time (``/iterations/oracle_s``: the
    perfect split of the realised computation; the iteration also pays messages, decoding
    and logging, which the oracle does not); NaN when the run has no oracle column."""
    it, n = run["iterations"], run["n"]
    if "oracle_s" not in it or not n:
        return math.nan
    dur = np.asarray(it["t_end"], float)[:n] - np.asarray(it["t_start"], float)[:n]
    orc = np.asarray(it["oracle_s"], float)[:n]
    ok = np.isfinite(dur) & np.isfinite(orc)
    return float(dur[ok].mean() / orc[ok].mean()) if ok.any() and orc[ok].mean() > 0 \
        else math.nan


def ratio_ci(a, b) -> dict:
    """a_k / b_k paired by seed k: mean, 95% interval, the ratios. A non-finite ratio (a
    target never reached, a zero time) leaves the interval NaN: no verdict comes from it."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or not a.size:
        raise ValueError(f"paired ratio needs equal, non-empty samples ({a.size} vs {b.size})")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = a / b
    out = {"n": int(r.size), "ratios": [float(x) for x in r]}
    if not np.isfinite(r).all():
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, **out}
    return {**ci(r), **out}


def direction(c: dict, threshold: float = 1.0) -> str:
    """"faster" when the whole interval is below ``threshold``, "slower" above, "tie" when
    it contains it, "n/a" without an interval."""
    if not (math.isfinite(c["lo"]) and math.isfinite(c["hi"])):
        return "n/a"
    if c["hi"] < threshold:
        return "faster"
    if c["lo"] > threshold:
        return "slower"
    return "tie"


def _best(rows: dict, names, metric: str) -> str:
    return min((n for n in names if n in rows), key=lambda n: float(np.mean(rows[n][metric])))


def compare(cases: dict, subject: str = "two-stage", baselines=BASELINES) -> list[dict]:
    """Per (scenario, placement): ``subject`` against the baseline with the smallest mean
    time to the loss target (and, separately, the smallest mean iteration time); ratios
    subject / baseline paired by seed (below 1: the subject is sooner)."""
    out = []
    for (scen, pl), rows in cases.items():
        if subject not in rows:
            continue
        sub = rows[subject]
        bl, bi = _best(rows, baselines, "t_loss"), _best(rows, baselines, "mean_iter_s")
        r = ratio_ci(sub["t_loss"], rows[bl]["t_loss"])
        out.append({
            "scenario": scen, "placement": pl, "subject": subject, "seeds": len(sub["t_loss"]),
            "best_loss": bl, "t_loss": r, "verdict": direction(r),
            "subject_t_loss": ci(sub["t_loss"]), "best_t_loss": ci(rows[bl]["t_loss"]),
            "best_iter": bi, "mean_iter": ratio_ci(sub["mean_iter_s"], rows[bi]["mean_iter_s"]),
            "subject_load": ci(sub["mean_load"]),
            "codes_load": min(float(np.mean(rows[c]["mean_load"])) for c in CODES
                              if c in rows)})
    return out


def vs_codes(cases: dict, subject: str = "two-stage", placement: str = "replicated:2",
             codes=CODES) -> list[dict]:
    """Per scenario under ``placement``: the speed-up best-of-``codes`` time to the loss target
    / ``subject``'s, paired by seed (above 1: the subject is sooner)."""
    out = []
    for (scen, pl), rows in cases.items():
        if pl != placement or subject not in rows:
            continue
        best = _best(rows, codes, "t_loss")
        out.append({"scenario": scen, "placement": pl, "subject": subject, "best_code": best,
                    "speedup": ratio_ci(rows[best]["t_loss"], rows[subject]["t_loss"]),
                    "seeds": len(rows[subject]["t_loss"])})
    return out


def table_rows(cases: dict) -> list[dict]:
    """One row per (scenario, placement, scheme): mean and interval of every metric."""
    return [{"scenario": scen, "placement": pl, "scheme": label,
             **{x: ci(v[x]) for x in METRICS if x in v}}
            for (scen, pl), rows in cases.items() for label, v in rows.items()]


def rivals(cases: dict, subject: str = "two-stage", headline: str = "partial-gc") -> list[dict]:
    """Per (scenario, placement, scheme): time to the loss target over ``subject``'s, paired
    by seed (mean, 95% CI), S, the fraction of uncoded's slowdown removed (paired with
    uncoded's S of the same seed), load and messages per worker; the ``headline`` scheme's
    row also carries ``subject / headline`` (below 1: the subject is sooner)."""
    out = []
    for (scen, pl), rows in cases.items():
        if subject not in rows:
            continue
        s_unc = np.asarray(rows["uncoded"]["S"], float) if "uncoded" in rows else None
        for label, v in rows.items():
            s = np.asarray(v["S"], float)
            removed = ((s_unc - s) / (s_unc - 1) if s_unc is not None
                       else np.full(len(s), math.nan))
            r = {"scenario": scen, "placement": pl, "scheme": label,
                 "vs_subject": ratio_ci(v["t_loss"], rows[subject]["t_loss"]),
                 "S": ci(s), "removed": ci(removed),
                 "load": float(np.mean(v["mean_load"])),
                 "msgs_per_worker": float(np.nanmean(v["msgs_per_worker"]))}
            if label == headline:
                h = ratio_ci(rows[subject]["t_loss"], v["t_loss"])
                r["headline"] = {**h, "verdict": direction(h)}
            out.append(r)
    return out


def analyse_all(suite, read) -> dict:
    """Everything the verdicts and tables take from the seeded comparison."""
    cases = collect(suite, read)
    return {"cases": cases, "rows": table_rows(cases),
            "compare": {s: compare(cases, s) for s in SUBJECTS},
            "vs_codes": vs_codes(cases), "rivals": rivals(cases), "seeds": suite.seeds,
            "dataset": suite.seeded_dataset, "iterations": suite.iterations}
