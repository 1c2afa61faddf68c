"""Calibrated cost profiles: the options of the simulator's cost model, read from and written
to a TOML file (``--profile PROFILE.toml``; written by ``mpicode calibrate``).

A profile holds values of the options in :data:`COST_OPTIONS` (top level), and an optional
``[calibration]`` table of what was measured (informational, not options). Its values come
between the package defaults and the run's ``--config`` file / command line, which override
them. Any problem is a one-line :class:`UsageError` naming the file.
"""

from __future__ import annotations

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


G = "cost model"
COST_OPTIONS: list[Option] = [
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


def write_profile(path, text: str, force: bool = True) -> None:
    """Write a profile's text (rank 0 of ``mpicode calibrate``) by the safe path
    (:func:`mpicode.io.safefile.output_text`)."""
    from mpicode.io import safefile
    safefile.output_text(path, text, force=force)
