"""The plugin registry: every scheme and scheduler by name (pure, no MPI).

Built-ins register themselves with the same decorators a plugin uses::

    from mpicode import register_scheme
    from mpicode.schemes import Scheme

    @register_scheme
    class Toy(Scheme):
        name = "toy"
        ...

A separately installed package is found through the entry-point groups ``mpicode.schemes``
and ``mpicode.schedulers`` (the entry point names a class, or a module whose import
registers it); they are loaded once, on the first lookup. A plugin that fails to load costs
one warning line on stderr, never the run. See docs/extending.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from mpicode.errors import UsageError

_SCHEMES: dict[str, type] = {}
_SCHEDULERS: dict[str, type] = {}
_loaded = False
GROUPS = {"mpicode.schemes": _SCHEMES, "mpicode.schedulers": _SCHEDULERS}


def _same(a: type, b: type) -> bool:
    # a module imported twice (a reload) defines an equal class anew: that is no conflict
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _register(table: dict, kind: str, cls):
    if not isinstance(cls, type):
        raise TypeError(f"register_{kind}: expected a class, got {cls!r}")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name or name == "base":
        raise ValueError(f"{kind} class {cls.__module__}.{cls.__qualname__} needs its own "
                         "class attribute `name` (the value of --" + kind + ")")
    old = table.get(name)
    if old is not None and not _same(old, cls):
        raise ValueError(f"{kind} name {name!r} is already registered by "
                         f"{old.__module__}.{old.__qualname__}; cannot register "
                         f"{cls.__module__}.{cls.__qualname__} under the same name")
    _check_options(cls, name)
    table[name] = cls
    return cls


def register_scheme(cls):
    """Register a :class:`mpicode.schemes.Scheme` subclass under ``cls.name`` (a decorator:
    returns ``cls``). A second, different class under a taken name is refused."""
    return _register(_SCHEMES, "scheme", cls)


def register_scheduler(cls):
    """Register a :class:`mpicode.schedulers.Scheduler` subclass under ``cls.name`` (a
    decorator: returns ``cls``)."""
    return _register(_SCHEDULERS, "scheduler", cls)


def _check_options(cls, name: str) -> None:
    """A class's options may not shadow a core option, nor differ from an option of the
    same name that another registered class declares (sharing an equal one is fine)."""
    from mpicode.config import OPTIONS
    core = {o.name for o in OPTIONS}
    for o in getattr(cls, "options", ()):
        if o.name in core:
            raise ValueError(f"{name}: option {o.name!r} clashes with a core option")
        for other in (*_SCHEMES.values(), *_SCHEDULERS.values()):
            for p in getattr(other, "options", ()):
                if p.name == o.name and p != o and not _same(other, cls):
                    raise ValueError(f"{name}: option {o.name!r} differs from the one of "
                                     f"{other.name!r}")


def _warn(text: str) -> None:
    # one line, once per job: under mpiexec only rank 0 prints
    rank = next((os.environ[v] for v in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK")
                 if v in os.environ), "0")
    if rank == "0":
        print(f"mpicode: warning: {text}", file=sys.stderr, flush=True)


def _load_entry_points() -> None:
    from importlib.metadata import entry_points
    for group, table in GROUPS.items():
        for ep in entry_points(group=group):
            try:
                obj = ep.load()
                if isinstance(obj, type):
                    _register(table, group.split(".")[1][:-1], obj)
            except Exception as e:  # a broken plugin must not take the run down
                why = str(e).splitlines()[0] if str(e) else ""
                _warn(f"plugin {ep.name!r} ({ep.value}, group {group}) not loaded: "
                      f"{type(e).__name__}{': ' + why if why else ''}")


def load() -> None:
    """Import the built-ins (every module of ``mpicode.schemes`` and ``mpicode.schedulers``,
    so a new built-in is one file), then the entry points. Idempotent."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil

    import mpicode.schedulers
    import mpicode.schemes
    for pkg in (mpicode.schemes, mpicode.schedulers):
        for m in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg.__name__}.{m.name}")
    _load_entry_points()


def schemes() -> dict[str, type]:
    """name -> scheme class: built-ins first (in their order), then plugins."""
    load()
    return dict(_SCHEMES)


def schedulers() -> dict[str, type]:
    """name -> scheduler class: built-ins first, then plugins."""
    load()
    return dict(_SCHEDULERS)


class UnknownName(UsageError, ValueError):
    """A name nobody registered: a usage error (one line, exit 2), and a ValueError for
    callers that catch those."""


def scheme(name: str) -> type:
    """The scheme class registered as ``name`` (an error naming the choices if none)."""
    table = schemes()
    if name not in table:
        raise UnknownName(f"unknown scheme {name!r} (choose from {', '.join(table)})")
    return table[name]


def scheduler(name: str) -> type:
    table = schedulers()
    if name not in table:
        raise UnknownName(f"unknown scheduler {name!r} (choose from {', '.join(table)})")
    return table[name]


def exact_schemes() -> tuple[str, ...]:
    """Names of the schemes that decode the exact gradient (class attribute ``exact``)."""
    return tuple(n for n, c in schemes().items() if c.exact)


def plugin_options(kind: str) -> list:
    """The options declared by the registered classes of ``kind`` ("scheme" or "scheduler"),
    each once, in registration order."""
    table = schemes() if kind == "scheme" else schedulers()
    out, seen = [], set()
    for cls in table.values():
        for o in getattr(cls, "options", ()):
            if o.name not in seen:
                seen.add(o.name)
                out.append(o)
    return out


def merged_options(core: list) -> list:
    """The core option table with the ``options`` of every registered scheme (before the
    core ``comm`` group) and scheduler (after it); ``--scheme``/``--scheduler`` choices are
    the registered names."""
    from dataclasses import replace
    names = {"scheme": tuple(schemes()), "scheduler": tuple(schedulers())}
    core = [replace(o, choices=names[o.name]) if o.name in names else o for o in core]
    comm = [i for i, o in enumerate(core) if o.group == "comm"]
    first, last = (comm[0], comm[-1] + 1) if comm else (len(core), len(core))
    return (core[:first] + plugin_options("scheme") + core[first:last]
            + plugin_options("scheduler") + core[last:])


def _describe_option(o) -> dict:
    return {"flag": o.flag, "name": o.name, "default": o.default, "help": o.help,
            "choices": list(o.choices) if o.choices else None}


def describe(as_json: bool = False) -> str:
    """``mpicode schemes``: every registered scheme (exact or not, its options: flag,
    default, help) and every scheduler, as text or JSON."""
    import json
    kinds = {"schemes": schemes(), "schedulers": schedulers()}
    data = {kind: [{"name": n, "class": f"{c.__module__}.{c.__qualname__}",
                    **({"exact": bool(c.exact)} if kind == "schemes" else {}),
                    "options": [_describe_option(o) for o in getattr(c, "options", ())],
                    "log_fields": dict(getattr(c, "log_fields", {}))}
                   for n, c in table.items()] for kind, table in kinds.items()}
    if as_json:
        return json.dumps(data, indent=2, default=str)
    lines = []
    for kind, entries in data.items():
        lines.append(f"{kind}:")
        for e in entries:
            tag = ("exact" if e["exact"] else "not exact") if "exact" in e else ""
            lines.append(f"  {e['name']:<20} {tag:<10} {e['class']}")
            for o in e["options"]:
                extra = f"; one of {', '.join(o['choices'])}" if o["choices"] else ""
                lines.append(f"      {o['flag']:<22} default {o['default']!s:<10} "
                             f"{o['help']}{extra}")
            if e["log_fields"]:
                lines.append(f"      logs /iterations: {', '.join(e['log_fields'])}")
        lines.append("")
    return "\n".join(lines).rstrip()


class View(Mapping):
    """``SCHEMES`` / ``SCHEDULERS`` of old code: a read-only, always current view."""

    def __init__(self, lookup):
        self._lookup = lookup

    def __getitem__(self, k):
        return self._lookup()[k]

    def __iter__(self):
        return iter(self._lookup())

    def __len__(self):
        return len(self._lookup())

    def __repr__(self):
        return repr(self._lookup())
