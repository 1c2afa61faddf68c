"""The building blocks of every option table: the :class:`Option` record, value types
(:data:`finite_float`, :data:`optional_float`, :data:`optional_int`, :data:`boolean`) and
checks (:func:`positive`, ...), and :func:`read_toml`. A leaf of the import graph: the core
table (:mod:`mpicode.core_options`), the cost model's (:mod:`mpicode.profile`) and every
scheme, scheduler, straggler model and channel class that declares ``options`` build on it.
(``UsageError`` lives in :mod:`mpicode.errors`; the name here is kept for old imports.)"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mpicode.errors import UsageError


@dataclass(frozen=True)
class Option:
    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None  # returns an error message or None
    group: str = "run"
    metavar: str | None = None
    flag_only: bool = False  # store_true switches

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def file_kind(path: str) -> str | None:
    """What ``path`` is when it exists and is not a regular file ("a FIFO (named pipe)",
    "a character device", ...), else None. ``stat`` only: a FIFO is never opened (opening one
    blocks until a writer comes)."""
    import os
    import stat
    try:
        m = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(m):
        return None
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(m):
            return name
    return "not a regular file"


def dataset_file(v: str):
    """--dataset: a name, or a path to a regular file (``/dev/urandom`` is refused even when
    the run computes nothing with it: it would be recorded as the run's dataset)."""
    kind = file_kind(v)
    return None if kind is None else f"is {kind}, not a dataset file"


def positive(x):
    return None if x > 0 else "must be > 0"


def nonneg(x):
    return None if x >= 0 else "must be >= 0"


def unit_open_closed(x):
    return None if 0 < x <= 1 else "must be in (0, 1]"


def unit_closed(x):
    return None if 0 <= x <= 1 else "must be in [0, 1]"


def optional_positive(x):
    return None if x is None or x > 0 else "must be > 0"


def _finite_float(s):
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(s)
    return v


def _optional_float(s):
    if s is None or (isinstance(s, str) and s.lower() in ("", "none", "off")):
        return None
    return _finite_float(s)


def _optional_int(s):
    if s is None or (isinstance(s, str) and s.lower() in ("", "none", "auto")):
        return None
    return int(s)


def _auto_or_int(s):
    """``auto`` or a whole number (``--eval-every``)."""
    if isinstance(s, str) and s.strip().lower() == "auto":
        return "auto"
    if isinstance(s, bool) or (isinstance(s, float) and s != int(s)):
        raise ValueError(s)
    return int(s)


def auto_or_positive(x):
    return None if x == "auto" or x > 0 else "must be auto or > 0"


def _bool(s):
    if isinstance(s, bool):
        return s
    t = str(s).lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(s)


def _is_pos_float(t):
    try:
        return float(t) > 0 and math.isfinite(float(t))
    except ValueError:
        return False


def option_values(options, cfg) -> dict:
    """``{name: value}`` of ``options`` as ``cfg`` gives them (an option's default where
    ``cfg`` has none): the keyword arguments a registered class is built with."""
    return {o.name: getattr(cfg, o.name, o.default) for o in options}


def unit_right_open(x):
    return None if 0 <= x < 1 else "must be in [0, 1)"


# public names of the value types, for the options a plugin class declares
finite_float, optional_float, optional_int, boolean = _finite_float, _optional_float, \
    _optional_int, _bool


def hidden_sizes(x):
    """``H`` or ``H1,H2``: one or two positive layer widths."""
    parts = str(x).split(",")
    ok = 1 <= len(parts) <= 2 and all(p.strip().isdigit() and int(p) > 0 for p in parts)
    return None if ok else "must be H or H1,H2 (one or two positive integers)"


def default_text(o: Option) -> str:
    """`` (default: X)``, unless the help already says what the default is or there is none."""
    if o.default is None or o.default == "" or "default" in o.help:
        return ""
    return f" (default: {o.default})"


def nearest(name: str, names) -> str:
    """``" (did you mean 'x'?)"`` for the closest known name, or nothing."""
    import difflib
    m = difflib.get_close_matches(name, list(names), n=1, cutoff=0.75)
    return f" (did you mean {m[0]!r}?)" if m else ""


def read_toml(path: str, where: str, missing: str) -> dict:
    r"""A TOML file's table; one-line :class:`UsageError`\ s (``missing`` when it is not a
    file, else ``where: ...``) for everything that can be wrong with it."""
    import tomllib
    from pathlib import Path
    kind = file_kind(path)
    if kind is not None:
        raise UsageError(f"{where}: is {kind}, not a file")
    if not Path(path).is_file():
        raise UsageError(missing)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{where}: TOML syntax error: {e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{where}: TOML syntax error: not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"{where}: cannot read: {e.strerror}") from None
