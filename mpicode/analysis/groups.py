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
DEFAULT = ["final_loss", "test_accuracy", "mean_iter_s", "total_s", "time_to_target_s",
           "S", "removed", "vs_oracle", "mean_load"]


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


def label(keys: list[str], values: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))


def aggregate(runs_read: list[dict], rows: list[dict], keys: list[str]) -> list[dict]:
    """One row per group (in the order groups first appear)."""
    groups = partition(runs_read, rows, keys)
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
        dropped.insert(0, cols.pop())
        header, body = header[:-1], [b[:-1] for b in body]
        lines = lay_out(header, body, left[:len(header)])
    notes = ["note: mean±h: the mean over the group's n runs and the half-width h of its 95% "
             "confidence interval (Student t); no ±: a single run"]
    if dropped:
        notes.append(f"note: left out to fit {WIDTH} columns: {', '.join(dropped)} "
                     "(--wide shows every column, --columns a,b,c a chosen set)")
    if target and any(0 < (g.get("target_reached") or 0) < 1 for g in groups):
        notes.append("note: time_to_target_s is the mean over the runs that reached the "
                     "target (target_reached: the fraction that did)")
    return lines, notes
