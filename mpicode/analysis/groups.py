"""``mpicode report --group-by KEY,...``: runs aggregated across seeds.

A key is a summary column (``scheme``, ``stragglers``, ``N``, ...) or a key of the run's
stored configuration (``seed``, ``placement``, ``slowdown``, ...; ``-`` or ``_`` alike). Per
group: ``n`` (runs) and, for every numeric column, the mean and the two-sided 95% Student-t
confidence interval of the mean (``mpicode.stats.mean_ci``) as ``<col>``, ``<col>_ci_low``,
``<col>_ci_high``. Non-finite values are left out of a mean; ``time_to_target_s`` is the mean
over the runs that reached the target (``target_reached`` is the fraction that did, and
``time_to_target_s`` is ``never`` when none did).
"""

from __future__ import annotations

import math

import mpicode.analysis.runs as runs
from mpicode.analysis.table import COMPACT, EMPTY, FORMATS, LEFT, NEVER, WIDTH, cell, lay_out
from mpicode.errors import UsageError
from mpicode.stats import mean_ci

SKIP = {"run", "file", "target_loss"}  # numeric but not worth a mean (or not numeric)
# the grouped table's default columns, in the order they stay when it is too wide (the last
# go first; before any of them, the columns equal in every group: they compare nothing)
DEFAULT = ["mean_iter_s", "vs_oracle", "mean_load", "S", "removed", "time_to_target_s",
           "final_loss", "test_accuracy", "total_s"]
# configuration keys that do not change what a run measures: runs differing only in these
# (and the seed) are replicates of one another
NOT_A_DIFFERENCE = {"seed", "out", "force", "quiet", "progress", "verbose", "eval_every",
                    "checkpoint_every", "resume", "flush_every", "stop_timeout", "profile",
                    "dead_after"}


def parse_keys(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise UsageError(f"--group-by {text!r}: expected KEY[,KEY...]")
    return keys


def key_value(row: dict, conf: dict, key: str):
    """Value of group key ``key`` for a run: its summary column, else its configuration."""
    if key in row:
        return row[key]
    name = key.replace("-", "_")
    if name in conf:
        v = conf[name]
        return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return KeyError(key)


def _numeric(rows: list[dict]) -> list[str]:
    keys = []
    for r in rows:
        for k, v in r.items():
            if k in SKIP or k in keys:
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool) or k == "target_reached":
                keys.append(k)
    return keys


def partition(runs_read: list[dict], rows: list[dict], keys: list[str]) -> dict[tuple, list]:
    """Group value tuple -> indices of its runs (groups in the order they first appear)."""
    confs = [runs.config(r) for r in runs_read]
    values = [[key_value(row, c, k) for k in keys] for row, c in zip(rows, confs, strict=True)]
    for j, k in enumerate(keys):
        if all(isinstance(v[j], KeyError) for v in values):
            valid = sorted(set(rows[0]) | set().union(*map(set, confs))) if rows else []
            raise UsageError(f"--group-by: unknown key {k}; valid: {','.join(valid)}")
    groups: dict[tuple, list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault(tuple(None if isinstance(x, KeyError) else x for x in v), []).append(i)
    return groups


def _fmt_values(vs) -> str:
    out = sorted({"-" if v is None else str(v) for v in vs})
    return ", ".join(out[:4]) + (f", ... ({len(out)} values)" if len(out) > 4 else "")


def differences(runs_read: list[dict], rows: list[dict], idx: list[int],
                keys: list[str]) -> dict[str, list]:
    """What the runs ``idx`` of one group differ in, besides the seed and the options that
    do not change what a run measures (``NOT_A_DIFFERENCE``) and the group keys: ``mode``,
    ``N``, the dataset, any option. {key: the values seen}."""
    confs = [runs.config(runs_read[i]) for i in idx]
    seen: dict[str, list] = {}
    names = {"mode": [rows[i].get("mode") for i in idx], "N": [rows[i].get("N") for i in idx]}
    for c in confs:
        for k in c:
            names.setdefault(k, [c.get(k) for c in confs])
    grouped = {k.replace("-", "_") for k in keys} | set(keys)
    for k, vs in names.items():
        if k in NOT_A_DIFFERENCE or k in grouped:
            continue
        if len({json_key(v) for v in vs}) > 1:
            seen[k] = vs
    return seen


def json_key(v) -> str:
    import json
    return json.dumps(v, sort_keys=True, default=str)


def check_alike(runs_read: list[dict], rows: list[dict], keys: list[str],
                groups: dict[tuple, list[int]]) -> None:
    """UsageError (one line, exit 2) naming the keys in which some group's runs differ
    besides the seed: a mean over MPI wall-clock and simulated virtual-time runs, or over
    N = 8 and N = 1024, is no statistic. ``--allow-mixed`` skips this check."""
    bad: dict[str, set] = {}
    where = None
    for gkey, idx in groups.items():
        for k, vs in differences(runs_read, rows, idx, keys).items():
            bad.setdefault(k, set()).update(json_key(v) if not isinstance(v, str) else v
                                            for v in vs)
            where = where or label(keys, gkey)
    if not bad:
        return
    order = sorted(bad, key=lambda k: (k not in ("mode", "N", "dataset"), k))
    what = "; ".join(f"{k} ({_fmt_values(bad[k])})" for k in order[:6])
    more = f" and {len(order) - 6} more" if len(order) > 6 else ""
    raise UsageError(f"--group-by {','.join(keys)}: the runs of group {where} differ in more "
                     f"than the seed: {what}{more}; add them to --group-by (e.g. --group-by "
                     f"{','.join(keys + [k for k in order[:3] if k not in keys])}) or pass "
                     "--allow-mixed to average them anyway")


def label(keys: list[str], values: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))


def aggregate(runs_read: list[dict], rows: list[dict], keys: list[str],
              allow_mixed: bool = False) -> list[dict]:
    """One row per group (in the order groups first appear); groups whose runs differ in
    more than the seed are refused unless ``allow_mixed`` (:func:`check_alike`)."""
    groups = partition(runs_read, rows, keys)
    if not allow_mixed:
        check_alike(runs_read, rows, keys, groups)
    target = any("target_loss" in r for r in rows)
    numeric = [c for c in _numeric(rows) if c != "time_to_target_s" or target]
    out = []
    for gkey, idx in groups.items():
        members = [rows[i] for i in idx]
        g = dict(zip(keys, gkey, strict=True))
        g["n"] = len(idx)
        for col in numeric:
            if col in keys:
                continue
            xs = [_num(m.get(col)) for m in members]
            if col == "time_to_target_s" and xs and all(x == math.inf for x in xs):
                m, lo, hi = math.inf, math.nan, math.nan
            else:
                m, lo, hi = mean_ci(xs)
            g[col], g[col + "_ci_low"], g[col + "_ci_high"] = m, lo, hi
        g["runs"] = [m["run"] for m in members]
        out.append(g)
    return out


def _num(v) -> float:
    if v is None:
        return math.nan
    return float(v)


def _pm(col: str, g: dict) -> str:
    m, lo, hi = g.get(col), g.get(col + "_ci_low"), g.get(col + "_ci_high")
    text = cell(FORMATS.get(col, "{}") if isinstance(m, str) else "{:.4g}", m)
    if text in (EMPTY, NEVER) or lo is None or not math.isfinite(lo) or \
            hi - lo <= 1e-9 * max(1.0, abs(m)):  # equal values (up to rounding): no spread
        return text
    return f"{text}±{(hi - lo) / 2:.2g}"


def render(groups: list[dict], keys: list[str], columns: list[str] | None, wide: bool,
           target: bool) -> tuple[list[str], list[str]]:
    """(lines, notes) of the grouped table: keys, n, then mean±half-width of the chosen (or
    the default, under the compact table's short headers) numeric columns; left out from the
    end until it fits WIDTH (not ``wide``)."""
    have = {k.removesuffix("_ci_low") for g in groups for k in g if k.endswith("_ci_low")}
    if columns:
        cols = [c for c in columns if c not in keys]
    elif wide:
        cols = [c for c in _numeric(groups) if c in have]
    else:
        cols = [c for c in DEFAULT if c in have and (c != "time_to_target_s" or target)]
    body = [[cell("{}", g[k]) for k in keys] + [str(g["n"])]
            + [_pm(c, g) if c in have else cell("{}", g.get(c)) for c in cols] for g in groups]
    short = dict(COMPACT) if not (wide or columns) else {}
    header = keys + ["n"] + [short.get(c, c) for c in cols]
    left = [k in LEFT or any(isinstance(g[k], str) for g in groups) for k in keys] + \
        [False] * (1 + len(cols))
    lines = lay_out(header, body, left)
    dropped = []
    while not wide and not columns and max(map(len, lines)) > WIDTH and cols:
        j = len(keys) + 1
        same = [i for i, c in enumerate(cols) if len({b[j + i] for b in body}) == 1]
        i = same[-1] if same and len(body) > 1 else len(cols) - 1
        dropped.insert(0, cols.pop(i))
        header = header[:j + i] + header[j + i + 1:]
        body = [b[:j + i] + b[j + i + 1:] for b in body]
        left = left[:j + i] + left[j + i + 1:]
        lines = lay_out(header, body, left)
    notes = ["note: mean±h: the mean over the group's n runs and the half-width h of its 95% "
             "confidence interval (Student t); no ±: a single run"]
    if dropped:
        notes.append(f"note: left out to fit {WIDTH} columns: {', '.join(dropped)} "
                     "(--wide shows every column, --columns a,b,c a chosen set)")
    if target and any(0 < (g.get("target_reached") or 0) < 1 for g in groups):
        notes.append("note: time_to_target_s is the mean over the runs that reached the "
                     "target (target_reached: the fraction that did)")
    return lines, notes
