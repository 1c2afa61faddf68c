"""Calibrated cost profiles: the options of the simulator's cost model, read from and written
to a TOML file (``--profile PROFILE.toml``; written by ``mpicode calibrate``).

A profile holds values of the options in :data:`COST_OPTIONS` (top level), and an optional
``[calibration]`` table of what was measured (informational, not options). Its values come
between the package defaults and the run's ``--config`` file / command line, which override
them. Any problem is a one-line :class:`UsageError` naming the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from mpicode.options import (
    Option,
    UsageError,
    _finite_float,
    _optional_float,
    nonneg,
    read_toml,
)


def _optional_nonneg(x):
    return None if x is None or x >= 0 else "must be >= 0"


def _optional_pos(x):
    return None if x is None or x > 0 else "must be > 0"


CALLS = ("begin", "result", "tick", "slot", "decode", "end", "rows", "log")
"""The coordinator's actions: the scheme's stage-1 plan (``begin``), a result and a tick
(``on_result``/``react``, ``on_tick``), the uplink scheduler's slot step, the decode, the
iteration's close (``outstanding`` + ``end``), building the row (records and oracle) and
logging it (append, progress, snapshot)."""

FEATURES = ("one", "log2n", "n", "tasks", "parts", "msgs")
"""The deterministic measure of an action's work: a constant, log2(N), N, the tasks it
touched (dispatched + cancelled by an event; every task of the iteration for ``end``,
``rows``, ``log``), the partitions of the tasks it dispatched, and the messages it combined
(``decode``) or that waited for the slot (``slot``)."""


def rank0_table(x) -> str:
    """A table of rank 0's per-action CPU model (``{policy: {call: [coefficients]}}``, as a
    TOML table in a profile or as JSON text), stored as canonical JSON text."""
    if isinstance(x, str):
        if x.strip().lower() in ("", "none", "reference"):
            return ""
        try:
            x = json.loads(x)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON: {e.msg}") from None
    if not isinstance(x, dict):
        raise ValueError("must be a table {policy: {call: [coefficients]}}")
    for pol, calls in x.items():
        if not isinstance(calls, dict):
            raise ValueError(f"entry {pol!r} must be a table of calls")
        for call, coefs in calls.items():
            if call not in CALLS:
                raise ValueError(f"{pol}.{call}: unknown call (calls: {', '.join(CALLS)})")
            if (not isinstance(coefs, list) or len(coefs) > len(FEATURES)
                    or not all(isinstance(c, (int, float)) and math.isfinite(c) and c >= 0
                               for c in coefs)):
                raise ValueError(f"{pol}.{call}: must be a list of at most {len(FEATURES)} "
                                 f"finite numbers >= 0 ({', '.join(FEATURES)})")
    return json.dumps(x, sort_keys=True, separators=(",", ":"))


G = "cost model"
COST_OPTIONS: list[Option] = [
    Option("coordinator_cost", str, "model", "cost model: rank 0's time for each of its "
           "actions in virtual time (model: deterministic, from the work each action did; "
           "measured: this process's CPU time, not reproducible; zero: instantaneous)",
           choices=("model", "measured", "zero"), group=G),
    Option("rank0_factor", _optional_float, None, "cost model: rank 0's wall time under MPI "
           "per second of in-process policy CPU time (default: the reference profile's)",
           check=_optional_pos, group=G),
    Option("rank0_send_s", _optional_float, None, "cost model: rank 0's seconds per MPI "
           "message it sends (default: the reference profile's)", check=_optional_nonneg,
           group=G),
    Option("rank0_recv_s", _optional_float, None, "cost model: rank 0's seconds per MPI "
           "message it receives (default: the reference profile's)", check=_optional_nonneg,
           group=G),
    Option("rank0_table", rank0_table, "", "cost model: rank 0's CPU model per policy and "
           "action, JSON {policy: {call: [coefficients]}} (default: the reference profile's; "
           "docs/design.md §2.6)", group=G, metavar="JSON"),
    Option("profile", str, "", "calibrated cost profile (mpicode calibrate) for simulate and "
           "train --delay-mode virtual; options given explicitly override it", group=G,
           metavar="PROFILE.toml"),
    Option("dispatch_s", _finite_float, 0.0, "cost model: seconds from a task's decision to "
           "its start on the worker", check=nonneg, group=G),
    Option("redispatch_s", _optional_float, None, "cost model: the same for a task decided "
           "during the iteration (stage 2, re-plans, re-issues; default: dispatch_s)",
           check=_optional_nonneg, group=G),
    Option("msg_latency_s", _finite_float, 0.0, "cost model: latency of each result message "
           "(s)", check=nonneg, group=G),
    Option("msg_bandwidth", _optional_float, None, "cost model: bytes/s of result messages "
           "(default: infinite)", check=_optional_pos, group=G),
    Option("poll_s", _finite_float, 0.0, "cost model: rank 0's longest polling interval (s; "
           "0: messages are seen when they land)", check=nonneg, group=G),
    Option("coord_log_s", _finite_float, 0.0, "cost model: rank 0's bookkeeping per iteration "
           "(s, the rows' log_s)", check=nonneg, group=G),
    Option("coord_decode_s", _finite_float, 0.0, "cost model: rank 0's decode per iteration (s)",
           check=nonneg, group=G),
    Option("coord_update_s", _finite_float, 0.0, "cost model: rank 0's update per iteration (s)",
           check=nonneg, group=G),
    Option("coord_eval_s", _finite_float, 0.0, "cost model: rank 0's evaluation, when due (s)",
           check=nonneg, group=G),
    Option("kernel_elements_per_s", _optional_float, None, "cost model: the kernel's elements/s "
           "for the default partition cost (default 2e9)", check=_optional_pos, group=G),
]
# the options a profile may set (not the profile itself)
PROFILE_KEYS = tuple(o.name for o in COST_OPTIONS if o.name != "profile")


def load_profile(path: str) -> dict:
    """The option values of a profile (raw, to be coerced by the option table)."""
    where = f"profile {path}"
    data = read_toml(path, where, f"{where}: not a file" if Path(path).exists()
                     else f"{where}: file not found")
    out = {}
    for k, v in data.items():
        if k == "calibration":
            if not isinstance(v, dict):
                raise UsageError(f"{where}: 'calibration' must be a table")
            continue
        name = k.replace("-", "_")
        if name not in PROFILE_KEYS:
            raise UsageError(f"{where}: unknown key {k!r} (a profile sets "
                             f"{', '.join(PROFILE_KEYS)})")
        if name in out:
            raise UsageError(f"{where}: key {k!r} given twice")
        out[name] = v
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"not a finite number: {v}")
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def render_profile(values: dict, calibration: dict, header: list[str]) -> str:
    """TOML text of a profile: header comments, the options, then ``[calibration]``."""
    lines = [f"# {h}" for h in header]
    for k in PROFILE_KEYS:
        if values.get(k) is not None:
            lines.append(f"{k} = {_toml_value(values[k])}")
    lines += ["", "[calibration]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in calibration.items()]
    return "\n".join(lines) + "\n"


def write_profile(path, text: str) -> None:
    """Write a profile's text (rank 0 of ``mpicode calibrate``)."""
    Path(path).write_text(text)
