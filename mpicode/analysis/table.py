"""Text tables of ``mpicode report``: the columns, their formats, and a compact default.

The compact default (no ``--wide`` / ``--columns``) shows the columns a researcher reads
first, under short headers, and leaves out the lowest-priority ones until the table fits in
``WIDTH`` characters (a note names what was left out). ``--wide`` shows every column and
``--columns a,b,c`` a chosen set, both under their full names (the CSV/JSON keys). Every
table writes a missing or NaN value as ``-`` and a target never reached as ``never``.
"""

from __future__ import annotations

import math

from mpicode.errors import UsageError

EMPTY = "-"
NEVER = "never"
WIDTH = 100


def _bytes(v) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(v) < 1000 or unit == "GB":
            return f"{v:.0f}{unit}" if unit == "B" else f"{v:.1f}{unit}"
        v /= 1000
    return str(v)


# (key, table format). The first 15 are the original columns; new ones are only appended.
COLUMNS = [("run", "{}"), ("status", "{}"), ("scheme", "{}"), ("stragglers", "{}"), ("N", "{}"),
           ("iterations", "{}"), ("final_loss", "{:.6g}"), ("test_accuracy", "{:.4f}"),
           ("mean_iter_s", "{:.4f}"), ("p95_iter_s", "{:.4f}"), ("total_s", "{:.3f}"),
           ("mean_load", "{:.3f}"), ("stage2_frac", "{:.2f}"), ("mean_coverage", "{:.3f}"),
           ("time_to_target_s", "{:.3f}"),
           ("scheduler", "{}"), ("channel", "{}"), ("bytes_up", _bytes),
           ("bytes_delivered", _bytes), ("jain", "{:.3f}"), ("jain_of", "{}"),
           ("throughput_Bps", "{:.4g}"), ("mean_comm_s", "{:.4f}"), ("p95_comm_s", "{:.4f}"),
           ("participation_jain", "{:.3f}"), ("vs_oracle", "{:.2f}"),
           ("coord_busy", "{:.2f}"), ("mean_policy_s", "{:.3g}"), ("mode", "{}"),
           ("S", "{:.3f}"), ("removed", "{:.3f}")]
FORMATS = {**dict(COLUMNS), "final_test_loss": "{:.6g}", "target_loss": "{:g}",
           "mean_oracle_s": "{:.4f}", "vs_oracle_part": "{:.2f}"}
LEFT = {"run", "status", "scheme", "stragglers", "scheduler", "channel", "jain_of", "file",
        "mode"}

# the compact default: (key, short header), in the order shown; PRIORITY: the order in which
# they stay when the table is too wide (the last ones go first)
COMPACT = [("run", "run"), ("status", "status"), ("scheme", "scheme"), ("N", "N"),
           ("mode", "mode"),
           ("iterations", "iters"), ("final_loss", "loss"), ("test_accuracy", "acc"),
           ("mean_iter_s", "iter_s"), ("p95_iter_s", "p95_s"), ("total_s", "total_s"),
           ("mean_load", "load"), ("coord_busy", "busy"), ("S", "S"), ("removed", "removed"),
           ("time_to_target_s", "target_s"), ("vs_oracle", "vs_oracle")]
PRIORITY = ["run", "status", "scheme", "N", "iterations", "final_loss", "mean_iter_s",
            "time_to_target_s", "vs_oracle", "S", "removed", "mode", "test_accuracy",
            "mean_load", "coord_busy", "total_s", "p95_iter_s"]
COMPACT_FORMATS = {"final_loss": "{:.4g}", "test_accuracy": "{:.3f}", "total_s": "{:.2f}",
                   "mean_load": "{:.2f}", "vs_oracle": "{:.2f}", "time_to_target_s": "{:.2f}",
                   "S": "{:.2f}", "removed": "{:.2f}"}


def cell(fmt, v) -> str:
    """One value as text: ``-`` for missing/NaN, ``never`` for inf (a target not reached)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return EMPTY
    if isinstance(v, float) and math.isinf(v):
        return NEVER
    if isinstance(v, bool):
        return "yes" if v else "no"
    if callable(fmt):
        return fmt(v)
    return fmt.format(v)


def valid_columns(rows: list[dict]) -> list[str]:
    """Every column a row has, the known ones first."""
    known = [c for c, _ in COLUMNS]
    extra = []
    for r in rows:
        extra += [k for k in r if k not in known and k not in extra]
    return known + extra


def parse_columns(text: str, valid: list[str]) -> list[str]:
    """``--columns a,b,c``: the chosen keys, or a one-line error listing the valid ones. The
    compact table's short headers (``iters``, ``loss``, ``iter_s``, ...) name their columns
    too: every header a table prints is accepted."""
    short = {s: k for k, s in COMPACT if s != k}
    keys = [short.get(k.strip(), k.strip()) if k.strip() not in valid else k.strip()
            for k in text.split(",") if k.strip()]
    bad = [k for k in keys if k not in valid]
    if bad or not keys:
        raise UsageError(f"--columns: unknown column {', '.join(bad) or repr(text)}; valid: "
                         f"{','.join(valid)}")
    return keys


def lay_out(header: list[str], body: list[list[str]], left: list[bool]) -> list[str]:
    """Aligned lines: header, a rule, then the body rows."""
    cells = [header] + body
    widths = [max(len(row[j]) for row in cells) for j in range(len(header))]
    lines = ["  ".join(v.ljust(widths[j]) if left[j] else v.rjust(widths[j])
                       for j, v in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _elide(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width // 2 - 1] + "~" + text[-(width // 2):]


def distinguishing(names: list[str], width: int = 24) -> tuple[list[str], list[str]]:
    """Run names short enough for the compact table that still tell the runs apart: the
    ``_``-separated parts every name shares (``cell``, options equal in every cell) are
    left out, so a sweep's cells show their index and the options that differ (the seed
    included) instead of a middle elided away. Returns (names, the shared parts)."""
    if len(names) < 2 or all(len(n) <= width for n in names):
        return [_elide(n, width) for n in names], []
    parts = [n.split("_") for n in names]
    common = set(parts[0]).intersection(*map(set, parts[1:]))
    short = ["_".join(p for p in ps if p not in common) or n for ps, n in zip(parts, names,
                                                                                strict=True)]
    if len(set(short)) < len(short):  # the parts were not what told them apart
        return [_elide(n, width) for n in names], []
    shared = [p for p in parts[0] if p in common and not p.isdigit() and p != "cell"]
    return [_elide(n, 2 * width) for n in short], shared


def render_rows(rows: list[dict], columns: list[str] | None = None, wide: bool = False,
                target: bool = False, width: int = WIDTH) -> tuple[list[str], list[str]]:
    """(table lines, notes) of summary rows: the compact default, ``wide`` (every column) or
    the ``columns`` chosen. ``target``: a --target-loss was given (time_to_target_s shown)."""
    if wide or columns:
        keys = columns or [k for k in valid_columns(rows)
                           if k != "time_to_target_s" or target]
        keys = [k for k in keys if k != "file" or columns]
        body = [[cell(FORMATS.get(k, "{}"), r.get(k)) for k in keys] for r in rows]
        return lay_out(keys, body, [k in LEFT for k in keys]), []
    keys = [k for k, _ in COMPACT if k != "time_to_target_s" or target]
    labels = dict(COMPACT)
    fmt = {k: COMPACT_FORMATS.get(k, FORMATS.get(k, "{}")) for k in keys}
    text = [{k: cell(fmt[k], r.get(k)) for k in keys} for r in rows]
    names, shared = distinguishing([t["run"].removesuffix(".h5") for t in text])
    for t, name in zip(text, names, strict=True):
        t["run"] = name
    dropped = []
    while True:
        lines = lay_out([labels[k] for k in keys], [[t[k] for k in keys] for t in text],
                        [k in LEFT for k in keys])
        if max(map(len, lines)) <= width or len(keys) <= 5:  # run .. N always stay
            break
        gone = max(keys, key=PRIORITY.index)
        keys.remove(gone)
        dropped.append(gone)
    notes = []
    if shared:
        notes.append(f"note: run names without what every run shares: {'_'.join(shared)}")
    if dropped:
        notes.append(f"note: left out to fit {width} columns: {', '.join(dropped)} "
                     "(--wide shows every column, --columns a,b,c a chosen set)")
    return lines, notes
