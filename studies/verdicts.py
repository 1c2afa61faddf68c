"""The four claims of the experiments issue, each decided from numbers by an explicit rule.

Every function here is pure: it takes the metrics the analysis computed and returns the
claim's ``verdict`` ("holds", "does not hold" or "mixed"), the ``rule`` as text (printed beside
the verdict), the per-case ``checks`` and an ``evidence`` line with the numbers. A claim holds
when every case passes, does not hold when none does, and is mixed otherwise
(:func:`combine`).
"""

from __future__ import annotations

import math

from studies.suite import NONIID_BIASED, NONIID_EXACT
from studies.sweep import slope

HOLDS, FAILS, MIXED = "holds", "does not hold", "mixed"

CLAIMS = {
    1: "Two-stage reaches the target accuracy sooner than every other exact scheme (the "
       "classic codes, speed-aware and self-scheduling), at lower computation load than cyclic "
       "and frc.",
    2: "The Lyapunov scheduler uses the uplink better (throughput, communication time per "
       "iteration) than fifo and round-robin, and keeps long-run fairness across workers.",
    3: "With non-IID partitions and persistent stragglers, ignoring stragglers biases the model "
       "(lower final accuracy), while two-stage and fair admission do not.",
    4: "Two-stage's planning and decoding cost stays near-linear in the uncovered partitions as "
       "N grows, while cyclic's least-squares decoding does not.",
}

# thresholds of the rules (named, so the rule text and the code cannot disagree)
JAIN_MIN = 0.95          # claim 2: long-run participation fairness
BIAS_MIN = 0.01          # claim 3: accuracy drop that counts as bias (1 point)
EXACT_TOL = 0.005        # claim 3: |accuracy - exact reference| that counts as unbiased
NEAR_LINEAR_MAX = 1.3    # claim 4: log-log slope that still counts as near-linear
SUPER_LINEAR_MIN = 1.5   # claim 4: log-log slope that counts as clearly super-linear
MIN_SPEEDUP_CODES = 1.2  # issue 16: sooner than the best of frc and cyclic under replicated:2
SWEEP_FIT_MIN_N = 64     # claim 4: fit slopes on N >= this (small N is fixed overhead)

RULES = {
    1: "MPI runtime, per (scenario, placement), over the seeded straggler realisations: the "
       "95% Student-t interval of two-stage's time to the loss target / the best other exact "
       "scheme's (of uncoded, frc, cyclic, speed-aware and self-scheduling; the lowest mean), "
       "paired by seed, lies below 1, and the upper end of two-stage's mean-load interval is "
       "below frc's and cyclic's load",
    2: "per coding scheme on the Rayleigh uplink: lyapunov's mean communication time per "
       "iteration is below fifo's and round-robin's, its throughput (bytes per slot while "
       "data waits) is at least theirs, and Jain's index of its long-run participation is "
       f">= {JAIN_MIN}",
    3: "per dataset, label-sorted partitions, bimodal stragglers: each ignore-stragglers "
       f"variant ends >= {BIAS_MIN:.2f} below uncoded's final test accuracy (biased), and "
       f"two-stage and two-stage + fair admission end within {EXACT_TOL} of it (unbiased)",
    4: "log-log slopes over N >= {min_n}: two-stage's policy CPU seconds per iteration "
       f"against uncovered partitions |U| <= {NEAR_LINEAR_MAX}, and cyclic's least-squares "
       f"decoding solve (timed alone to the largest N, since the scheme stops decoding "
       f"exactly before that) against N >= {SUPER_LINEAR_MIN}",
}


# issue 16's MPI targets, decided like the claims (ids "16a", "16b")
TARGETS = {
    "vs_codes": "Under replicated:2 (the storage frc and cyclic use), two-stage reaches the "
                f"loss target at least {MIN_SPEEDUP_CODES}x sooner than the best of frc and "
                "cyclic.",
    "no_later": "In the MPI runtime at N = 8, two-stage's time to the loss target is no later "
                "than the best other exact scheme's, within the confidence interval.",
}
TARGET_RULES = {
    "vs_codes": "per scenario under replicated:2: the 95% interval of (best of frc and cyclic by "
                "mean) / two-stage time to the loss target, paired by seed, has its lower end "
                f">= {MIN_SPEEDUP_CODES} (met; 'missed' when its upper end is below)",
    "no_later": "per (scenario, placement): the 95% interval of two-stage / best other exact "
                "scheme time to the loss target, paired by seed, has its lower end <= 1 (not "
                "significantly later)",
}


def combine(passed: list[bool]) -> str:
    """holds: all cases pass; does not hold: none; mixed: some. No case: does not hold."""
    if passed and all(passed):
        return HOLDS
    if not any(passed):
        return FAILS
    return MIXED


def _ratio(a: float, b: float) -> float:
    """a / b with inf/inf and 0/0 as NaN."""
    if b == 0 or (math.isinf(a) and math.isinf(b)):
        return math.nan
    return a / b


def _ci_txt(c: dict, digits: int = 2) -> str:
    if not math.isfinite(c["mean"]):
        return "n/a"
    return f"{c['mean']:.{digits}f} [{c['lo']:.{digits}f}, {c['hi']:.{digits}f}]"


def claim1(cmp: list[dict], variant: str = "two-stage") -> dict:
    """``cmp``: :func:`studies.seeded.compare` rows of ``variant``: per (scenario,
    placement) the ratio of its time to the loss target to the best other exact scheme's,
    paired by seed, with its 95% interval, and the loads."""
    checks = []
    for c in cmp:
        r = c["t_loss"]
        sooner = math.isfinite(r["hi"]) and r["hi"] < 1.0
        lighter = c["subject_load"]["hi"] < c["codes_load"]
        checks.append({
            "case": f"{c['scenario']}/{c['placement']}", "pass": bool(sooner and lighter),
            "sooner_loss": bool(sooner), "lighter": bool(lighter), "verdict": c["verdict"],
            "best_loss": c["best_loss"], "ratio_loss": r, "ratio_iter": c["mean_iter"],
            "best_iter": c["best_iter"], "load": c["subject_load"]["mean"],
            "codes_load": c["codes_load"], "seeds": c["seeds"]})
    n = len(checks)
    tally = {v: sum(c["verdict"] == v for c in checks) for v in ("faster", "tie", "slower")}
    ev = (f"{variant} / best other exact scheme, time to the loss target, mean [95% CI] over "
          f"{checks[0]['seeds'] if checks else 0} seeds: "
          + "; ".join(f"{c['case']} {_ci_txt(c['ratio_loss'])} vs {c['best_loss']}"
                      f"{'' if c['lighter'] else ' (load not lower)'}" for c in checks))
    plain = (f"In the MPI runtime ({checks[0]['seeds'] if checks else 0} straggler "
             f"realisations per cell), {variant} reached the loss target sooner than the best "
             f"other exact scheme with the interval of the ratio below 1 in {tally['faster']}/"
             f"{n} (scenario, placement) cases, tied (interval contains 1) in {tally['tie']} and "
             f"was later in {tally['slower']}; mean ratio "
             f"{_range([c['ratio_loss']['mean'] for c in checks])}"
             f", mean load {_range([c['load'] for c in checks])} against frc's and cyclic's "
             f"{_range([c['codes_load'] for c in checks])}.")
    lost = [c for c in checks if not c["pass"]]
    if lost:
        plain += " Not passed: " + ", ".join(
            f"{c['case']} ({_ci_txt(c['ratio_loss'])} vs {c['best_loss']}"
            f"{'' if c['lighter'] else ', load not lower'})" for c in lost) + "."
    return {"claim": CLAIMS[1] if variant == "two-stage" else
            CLAIMS[1].replace("Two-stage", f"Two-stage, paper's shape ({variant}),"),
            "verdict": combine([c["pass"] for c in checks]), "rule": RULES[1].replace(
                "two-stage's", f"{variant}'s"), "checks": checks, "evidence": ev,
            "plain": plain}


def target_vs_codes(vs: list[dict], min_speedup: float = MIN_SPEEDUP_CODES) -> dict:
    """Issue 16: under ``replicated:2``, two-stage at least ``min_speedup`` x sooner to the
    loss target than the best of frc and cyclic (``vs``: :func:`seeded.vs_codes` rows)."""
    checks = [{"case": f"{c['scenario']}/{c['placement']}", "speedup": c["speedup"],
               "best_code": c["best_code"],
               "pass": bool(math.isfinite(c["speedup"]["lo"])
                            and c["speedup"]["lo"] >= min_speedup),
               "status": _status(c["speedup"], min_speedup)} for c in vs]
    ev = "; ".join(f"{c['case']} {_ci_txt(c['speedup'])}x vs {c['best_code']} ({c['status']})"
                   for c in checks)
    return {"claim": TARGETS["vs_codes"], "verdict": combine([c["pass"] for c in checks]),
            "rule": TARGET_RULES["vs_codes"], "checks": checks, "evidence": ev, "plain":
            f"Under replicated:2, two-stage's speed-up to the loss target over the best of frc "
            f"and cyclic (paired by seed, 95% CI): {ev}."}


def target_no_later(cmp: list[dict]) -> dict:
    """Issue 16: in the MPI runtime, two-stage's time to the loss target no later than the
    best other exact scheme's within the interval (``cmp``: :func:`seeded.compare` rows)."""
    checks = [{"case": f"{c['scenario']}/{c['placement']}", "ratio_loss": c["t_loss"],
               "best_loss": c["best_loss"], "verdict": c["verdict"],
               "pass": bool(math.isfinite(c["t_loss"]["lo"]) and c["t_loss"]["lo"] <= 1.0)}
              for c in cmp]
    ev = "; ".join(f"{c['case']} {_ci_txt(c['ratio_loss'])} vs {c['best_loss']} "
                   f"({c['verdict']})" for c in checks)
    return {"claim": TARGETS["no_later"], "verdict": combine([c["pass"] for c in checks]),
            "rule": TARGET_RULES["no_later"], "checks": checks, "evidence": ev, "plain":
            f"Two-stage / best other exact scheme, time to the loss target (95% CI): {ev}."}


def _status(c: dict, threshold: float) -> str:
    if not (math.isfinite(c["lo"]) and math.isfinite(c["hi"])):
        return "n/a"
    if c["lo"] >= threshold:
        return "met"
    return "missed" if c["hi"] < threshold else "within the CI"


RULE2_CI = ("per coding scheme and block (virtual time: the simulator over 8 seeds; MPI: the "
            "runtime over 3), seeds = channel realisations and straggler draws: the 95% "
            "interval of lyapunov's time to target / the baseline's (paired by seed) is below "
            "1 against fifo and round-robin, and its participation floor holds with Jain >= "
            f"{JAIN_MIN}; against max-weight and proportional-fair the interval is reported")


def claim2_ci(cmp: list[dict]) -> dict:
    """Claim 2 from :func:`studies.comm_study.compare` (ratios with CIs)."""
    checks = []
    for c in cmp:
        t = c["time_to_target_s"]
        checks.append({"case": f"{c['block']}/{c['scheme']} vs {c['baseline']}",
                       "block": c["block"], "baseline": c["baseline"],
                       "ratio": t["ratio"], "verdict": t["verdict"],
                       "link_ratio": c["mean_link_s"]["ratio"], "fair": bool(
                           c["floor_held"] and c["part_jain"]["mean"] >= JAIN_MIN),
                       "pass": t["verdict"] == HOLDS and c["floor_held"]
                       and c["part_jain"]["mean"] >= JAIN_MIN})
    core = [c for c in checks if c["baseline"] in ("fifo", "round-robin")]

    def iv(c):
        r = c["ratio"]
        return f"{c['case']}: {r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] {c['verdict']}"

    ev = "; ".join(iv(c) for c in checks if c["baseline"] != "lyapunov-airtime")
    tally = {b: [c["verdict"] for c in checks if c["baseline"] == b]
             for b in dict.fromkeys(c["baseline"] for c in checks)}
    plain = ("Lyapunov's time to target relative to each baseline (95% CI over seeds): "
             + "; ".join(f"{b}: {v.count(HOLDS)} sooner, {v.count('tie')} tie, "
                         f"{v.count(FAILS)} later of {len(v)}" for b, v in tally.items())
             + ".")
    return {"claim": CLAIMS[2], "verdict": combine([c["pass"] for c in core]),
            "rule": RULE2_CI, "checks": checks, "evidence": ev, "plain": plain}


def claim2(cases: dict, study: list[dict] | None = None) -> dict:
    """``cases``: {scheme: {scheduler: {"mean_comm_s", "bytes_per_slot", "jain_participation",
    "min_participation"}}}: the one-seed MPI suite cells. With ``study`` (the comparisons of
    :mod:`studies.comm_study`), the verdict is :func:`claim2_ci`'s instead."""
    if study:
        return claim2_ci(study)
    checks = []
    for scheme, rows in cases.items():
        ly = rows["lyapunov"]
        faster = all(ly["mean_comm_s"] < rows[b]["mean_comm_s"] for b in ("fifo", "round-robin"))
        fuller = all(ly["bytes_per_slot"] >= rows[b]["bytes_per_slot"]
                     for b in ("fifo", "round-robin"))
        fair = ly["jain_participation"] >= JAIN_MIN
        best_base = min(rows[b]["mean_comm_s"] for b in ("fifo", "round-robin"))
        checks.append({
            "case": scheme, "pass": bool(faster and fuller and fair), "faster": bool(faster),
            "fuller": bool(fuller), "fair": bool(fair),
            "comm_change": _ratio(ly["mean_comm_s"], best_base) - 1,
            "throughput_gain": _ratio(ly["bytes_per_slot"], max(
                rows[b]["bytes_per_slot"] for b in ("fifo", "round-robin"))),
            "jain": ly["jain_participation"], "min_participation": ly["min_participation"],
            "vs_max_weight": _ratio(ly["mean_comm_s"], rows["max-weight"]["mean_comm_s"]) - 1
            if "max-weight" in rows else math.nan})
    ev = "; ".join(
        f"{c['case']}: comm time {100 * c['comm_change']:+.0f}% vs the better of fifo and "
        f"round-robin, throughput x{c['throughput_gain']:.2f}, participation Jain "
        f"{c['jain']:.3f} (min {c['min_participation']:.2f})" for c in checks)
    plain = (f"Against the better of fifo and round-robin, lyapunov changed the communication "
             f"time per iteration by {_range([100 * c['comm_change'] for c in checks], 0)}% "
             f"and carried {_range([c['throughput_gain'] for c in checks])}x the bytes per busy "
             f"slot ({', '.join(c['case'] for c in checks)}), with a long-run participation "
             f"Jain index of {_range([c['jain'] for c in checks], 3)} (lowest worker "
             f"{_range([c['min_participation'] for c in checks])}). Against max-weight (no "
             f"admission control) its communication time differed by "
             f"{_range([100 * c['vs_max_weight'] for c in checks], 0)}%")
    vs_mw = [c["vs_max_weight"] for c in checks]
    if all(abs(x) <= 0.05 for x in vs_mw):
        plain += (": the gain over fifo and round-robin comes from queue- and channel-aware "
                  "transmission, which max-weight shares, not from coding-aware admission.")
    elif all(x < -0.05 for x in vs_mw):
        plain += ": coding-aware admission cut it further."
    else:
        plain += "."
    bad = [c for c in checks if not c["pass"]]
    if bad:
        plain += " Not passed: " + ", ".join(
            f"{c['case']} ({', '.join(k for k in ('faster', 'fuller', 'fair') if not c[k])} "
            f"failed)" for c in bad) + "."
    return {"claim": CLAIMS[2], "verdict": combine([c["pass"] for c in checks]),
            "rule": RULES[2], "checks": checks, "evidence": ev, "plain": plain}


def claim3(cases: dict) -> dict:
    """``cases``: {dataset: {variant: {"final_acc", "final_loss"}}} for label-sorted
    partitions; variant ``uncoded`` is the exact reference."""
    checks = []
    for ds, rows in cases.items():
        ref = rows["uncoded"]["final_acc"]
        ref_loss = rows["uncoded"].get("final_loss", math.nan)
        for v in NONIID_BIASED + NONIID_EXACT:
            d = rows[v]["final_acc"] - ref
            biased = v in NONIID_BIASED
            ok = -d >= BIAS_MIN if biased else abs(d) <= EXACT_TOL
            checks.append({"case": f"{ds}: {v}", "pass": bool(ok),
                           "kind": "biased" if biased else "unbiased", "delta": d,
                           "loss_delta": rows[v].get("final_loss", math.nan) - ref_loss})
    ev = "; ".join(f"{c['case']} {100 * c['delta']:+.1f} pts accuracy, training loss "
                   f"{c['loss_delta']:+.4f} vs uncoded{'' if c['pass'] else ' (fails)'}"
                   for c in checks)
    parts = []
    for ds in cases:
        mine = [c for c in checks if c["case"].startswith(f"{ds}: ")]
        ign = [c for c in mine if c["kind"] == "biased"]
        ex = [c for c in mine if c["kind"] == "unbiased"]
        acc = " and ".join(f"{100 * c['delta']:+.1f}" for c in ign)
        loss = " and ".join(f"{c['loss_delta']:+.4f}" for c in ign)
        names = ", ".join(c["case"].split(": ")[1] for c in ign)
        txt = (f"on {ds}, ignoring the stragglers changed the final test accuracy by {acc} "
               f"points ({names}; training loss {loss})")
        below = [c for c in ign if not c["pass"]]
        if below:
            which = ", ".join(c["case"].split(": ")[1] for c in below)
            txt += (f"; {which} stayed below the bias threshold"
                    + (" (the loss moved but the predicted labels hardly did)"
                       if all(c["loss_delta"] > 0 for c in below) else ""))
        txt += (f", while two-stage and two-stage with fair admission stayed within "
                f"{max(abs(100 * c['delta']) for c in ex):.1f} points of uncoded")
        parts.append(txt)
    plain = "Under label-sorted partitions and persistent stragglers, " + "; ".join(parts) + "."
    return {"claim": CLAIMS[3], "verdict": combine([c["pass"] for c in checks]),
            "rule": RULES[3], "checks": checks, "evidence": ev, "plain": plain}


def claim4(rows: list[dict], notes: list[str], lstsq: list[dict],
           min_n: int = SWEEP_FIT_MIN_N) -> dict:
    """``rows``: sweep rows (scheme, N, policy_s, decode_s, uncovered); ``lstsq``: rows (N,
    lstsq_s) of cyclic's decoding solve alone. Slopes are fitted on N >= ``min_n`` (below it a
    fixed per-iteration overhead dominates)."""

    def pick(name):
        return [r for r in rows if r["scheme"] == name and r["N"] >= min_n]

    ts, cy = pick("two-stage"), pick("cyclic")
    ls = [r for r in lstsq if r["N"] >= min_n]
    s_u = slope([r["uncovered"] for r in ts], [r["policy_s"] for r in ts])
    s_n = slope([r["N"] for r in ts], [r["policy_s"] for r in ts])
    c_n = slope([r["N"] for r in ls], [r["lstsq_s"] for r in ls])
    c_dec = slope([r["N"] for r in cy], [r["decode_s"] for r in cy])
    checks = [
        {"case": "two-stage vs |U|", "pass": bool(s_u <= NEAR_LINEAR_MAX), "slope": s_u,
         "n_max": max((r["N"] for r in ts), default=0)},
        {"case": "cyclic solve vs N", "pass": bool(c_n >= SUPER_LINEAR_MIN), "slope": c_n,
         "n_max": max((r["N"] for r in ls), default=0)},
    ]
    ev = (f"two-stage cost ~ |U|^{s_u:.2f} (~ N^{s_n:.2f}) up to N={checks[0]['n_max']}; "
          f"cyclic's decoding solve ~ N^{c_n:.2f} up to N={checks[1]['n_max']} "
          f"({_ms(ls, 'lstsq_s')}); the cyclic scheme's own decode ~ N^{c_dec:.2f} up to N="
          f"{max((r['N'] for r in cy), default=0)}")
    cyc_notes = [n for n in notes if n.startswith("cyclic")]
    if cyc_notes:
        ev += "; " + "; ".join(cyc_notes)
    plain = (f"Two-stage's planning and decoding cost grew like |U|^{s_u:.2f} (N^{s_n:.2f}) up "
             f"to N={checks[0]['n_max']}; cyclic's least-squares decoding solve grew like "
             f"N^{c_n:.2f} ({_ms(ls, 'lstsq_s')}).")
    if cyc_notes:
        plain += (" The cyclic scheme itself could not decode exactly beyond N="
                  f"{max((r['N'] for r in rows if r['scheme'] == 'cyclic'), default=0)} "
                  "(its B from Tandon's Algorithm 2 is too ill-conditioned), so its own decode "
                  f"was timed only up to there (~ N^{c_dec:.2f}).")
    return {"claim": CLAIMS[4], "verdict": combine([c["pass"] for c in checks]), "plain": plain,
            "rule": RULES[4].format(min_n=min_n), "checks": checks, "evidence": ev,
            "slopes": {"two-stage_vs_U": s_u, "two-stage_vs_N": s_n, "cyclic_solve_vs_N": c_n,
                       "cyclic_decode_vs_N": c_dec}}


def _ms(rows: list[dict], key: str) -> str:
    if not rows:
        return "n/a"
    a, b = rows[0], rows[-1]
    return f"{1e3 * a[key]:.2f} ms at N={a['N']} to {1e3 * b[key]:.0f} ms at N={b['N']}"


def _range(xs, digits: int = 2) -> str:
    """'lo to hi' of the finite values (one value if they agree at ``digits``)."""
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return "n/a"
    lo, hi = f"{min(xs):.{digits}f}", f"{max(xs):.{digits}f}"
    return lo if lo == hi else f"{lo} to {hi}"
