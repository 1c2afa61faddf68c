"""The plugin registry: every scheme, scheduler, straggler model and channel by name (pure,
no MPI).

Built-ins register themselves with the same decorators a plugin uses::

    from mpicode import register_scheme
    from mpicode.schemes import Scheme

    @register_scheme
    class Toy(Scheme):
        name = "toy"
        ...

A class owns its options (``options = (Option(...), ...)``: CLI flags, TOML keys, checks)
and its construction from a configuration. Four kinds, four entry-point groups:

==================  ==========================  ============================  ===========
kind                decorator                   entry-point group             chosen by
==================  ==========================  ============================  ===========
scheme              ``register_scheme``         ``mpicode.schemes``           --scheme
scheduler           ``register_scheduler``      ``mpicode.schedulers``        --scheduler
straggler model     ``register_straggler_model`` ``mpicode.straggler_models`` --stragglers
channel             ``register_channel``        ``mpicode.channels``          --channel
==================  ==========================  ============================  ===========

The built-ins are imported on the first lookup. A separately installed package is found
through its entry point (which names a class, or a module whose import registers classes),
but only when it is needed: when a name, flag or key is not a built-in one, or when every
class is listed (``mpicode plugins``). So a slow or broken plugin costs a run that uses only
built-ins nothing. A plugin that fails to load costs one warning line naming it, never the
run. Every class keeps its :class:`Origin` (built-in, or entry point and distribution), and
:func:`plugin_failure` turns an exception raised inside a plugin's callback into the one
line that names the plugin (docs/extending.md).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from mpicode.core_options import OPTIONS as CORE_OPTIONS
from mpicode.errors import PluginError, UsageError


@dataclass(frozen=True)
class Kind:
    """One kind of registered class."""

    key: str                    # "straggler_model": the suffix of register_<key>
    title: str                  # "straggler models": headings of the listing
    group: str                  # entry-point group
    option: str                 # the core option that names one ("stragglers")
    builtins: tuple[str, ...]   # packages (every module of them) or modules to import
    table: dict


_SCHEMES: dict[str, type] = {}
_SCHEDULERS: dict[str, type] = {}
_STRAGGLER_MODELS: dict[str, type] = {}
_CHANNELS: dict[str, type] = {}
# the file-replaying built-ins (trace straggler model, trace channel) read their files in io/
_REPLAY = "mpicode.io.replay"
KINDS = {k.key: k for k in (
    Kind("scheme", "schemes", "mpicode.schemes", "scheme", ("mpicode.schemes",), _SCHEMES),
    Kind("scheduler", "schedulers", "mpicode.schedulers", "scheduler",
         ("mpicode.schedulers",), _SCHEDULERS),
    Kind("straggler_model", "straggler models", "mpicode.straggler_models", "stragglers",
         ("mpicode.models", _REPLAY), _STRAGGLER_MODELS),
    Kind("channel", "channels", "mpicode.channels", "channel", ("mpicode.models", _REPLAY),
         _CHANNELS),
)}
GROUPS = {k.group: k.table for k in KINDS.values()}  # old name: group -> table


@dataclass(frozen=True)
class Origin:
    """Where a registered class comes from: mpicode itself, an entry point of an installed
    distribution, or code that called a ``register_*`` decorator."""

    kind: str
    name: str
    cls: type
    entry_point: str | None = None    # "toy = mpicode_toyscheme:Replicated"
    group: str | None = None          # "mpicode.schemes"
    distribution: str | None = None   # "mpicode-toyscheme 0.1"

    @property
    def builtin(self) -> bool:
        return self.entry_point is None and self.cls.__module__.split(".")[0] == "mpicode"

    @property
    def class_path(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"

    def source(self) -> str:
        """``built-in``, ``entry point E of DIST`` or ``registered by MODULE``."""
        if self.builtin:
            return "built-in"
        if self.entry_point is not None:
            dist = f" of {self.distribution}" if self.distribution else ""
            return f"entry point {self.group} '{self.entry_point}'{dist}"
        return f"registered by {self.cls.__module__}"

    def __str__(self) -> str:
        what = "built-in" if self.builtin else "plugin"
        return f"{what} {self.kind.replace('_', ' ')} {self.name!r} ({self.source()})"


_ORIGINS: dict[type, Origin] = {}
_loading: list = []    # the entry point being loaded (its registrations are attributed to it)
_state = {"builtins": False, "plugins": False}


def _same(a: type, b: type) -> bool:
    # a module imported twice (a reload) defines an equal class anew: that is no conflict
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _register(kind: str, cls):
    k = KINDS[kind]
    label = kind.replace("_", " ")
    if not isinstance(cls, type):
        raise TypeError(f"register_{kind}: expected a class, got {cls!r}")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name or name == "base" or ":" in name:
        raise ValueError(f"{label} class {cls.__module__}.{cls.__qualname__} needs its own "
                         f"class attribute `name` (the value of --{k.option.replace('_', '-')}"
                         ", without ':')")
    old = k.table.get(name)
    if old is not None and not _same(old, cls):
        raise ValueError(f"{label} name {name!r} is already registered by "
                         f"{old.__module__}.{old.__qualname__}; cannot register "
                         f"{cls.__module__}.{cls.__qualname__} under the same name")
    _check_options(cls, name)
    k.table[name] = cls
    ep = _loading[-1] if _loading else None
    _ORIGINS[cls] = Origin(kind, name, cls, *(_describe_entry_point(ep) if ep else ()))
    return cls


def register_scheme(cls):
    """Register a :class:`mpicode.schemes.Scheme` subclass under ``cls.name`` (a decorator:
    returns ``cls``). A second, different class under a taken name is refused."""
    return _register("scheme", cls)


def register_scheduler(cls):
    """Register a :class:`mpicode.schedulers.Scheduler` subclass under ``cls.name`` (a
    decorator: returns ``cls``)."""
    return _register("scheduler", cls)


def register_straggler_model(cls):
    """Register a :class:`mpicode.models.stragglers.StragglerModel` subclass under
    ``cls.name``, the value of ``--stragglers`` (a decorator: returns ``cls``)."""
    return _register("straggler_model", cls)


def register_channel(cls):
    """Register a :class:`mpicode.models.channels.Channel` subclass under ``cls.name``, the
    value of ``--channel`` (a decorator: returns ``cls``)."""
    return _register("channel", cls)


def _all_classes() -> Iterator[type]:
    for k in KINDS.values():
        yield from k.table.values()


def _check_options(cls, name: str) -> None:
    """A class's options may not shadow a core option, nor differ from an option of the
    same name that another registered class declares (sharing an equal one is fine)."""
    core = {o.name for o in CORE_OPTIONS}
    for o in getattr(cls, "options", ()):
        if o.name in core:
            raise ValueError(f"{name}: option {o.name!r} clashes with a core option")
        for other in _all_classes():
            for p in getattr(other, "options", ()):
                if p.name == o.name and p != o and not _same(other, cls):
                    raise ValueError(f"{name}: option {o.name!r} differs from the one of "
                                     f"{other.name!r}")


# ---- loading: built-ins on the first lookup, entry points only when needed ----------------
def _warn(text: str) -> None:
    # one line, once per job: under mpiexec only rank 0 prints
    rank = next((os.environ[v] for v in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK")
                 if v in os.environ), "0")
    if rank == "0":
        print(f"mpicode: warning: {text}", file=sys.stderr, flush=True)


def _describe_entry_point(ep) -> tuple[str, str | None, str | None]:
    """(``name = value``, group, ``distribution version`` or None) of an entry point."""
    dist = getattr(ep, "dist", None)
    dname = None
    if dist is not None:
        try:
            dname = f"{dist.metadata['Name']} {dist.version}"
        except Exception:  # a distribution without readable metadata is still named by ep
            dname = None
    return f"{ep.name} = {ep.value}", getattr(ep, "group", None), dname


def _one_line(e: BaseException) -> str:
    why = " ".join(str(e).split())
    return f"{type(e).__name__}{': ' + why if why else ''}"


def _load_entry_points() -> None:
    from importlib.metadata import entry_points
    for kind in KINDS.values():
        for ep in entry_points(group=kind.group):
            _loading.append(ep)
            try:
                obj = ep.load()
                if isinstance(obj, type):
                    _register(kind.key, obj)
            except Exception as e:  # a broken plugin must not take the run down
                text, group, dist = _describe_entry_point(ep)
                _warn(f"plugin {ep.name!r} ({ep.value}, group {group or kind.group}"
                      f"{', ' + dist if dist else ''}) not loaded: {_one_line(e)}")
            finally:
                _loading.pop()


def _load_builtins() -> None:
    if _state["builtins"]:
        return
    _state["builtins"] = True
    # by name: a new built-in is one file in its package (and the registry stays below them)
    import importlib
    import pkgutil
    for module in dict.fromkeys(m for k in KINDS.values() for m in k.builtins):
        mod = importlib.import_module(module)
        for sub in pkgutil.iter_modules(getattr(mod, "__path__", [])):
            importlib.import_module(f"{module}.{sub.name}")


def load_plugins() -> bool:
    """Load the entry points of every group, once. True if this call loaded them (so a
    lookup that failed before may succeed now), False if they were loaded already."""
    _load_builtins()
    if _state["plugins"]:
        return False
    _state["plugins"] = True
    _load_entry_points()
    return True


def load() -> None:
    """The built-ins and every plugin (old name; listing needs them all). Idempotent."""
    load_plugins()


def registered(kind: str) -> dict[str, type]:
    """name -> class of ``kind`` as registered now: the built-ins, and plugins only if they
    were loaded (a lookup of a name that is not built-in, or a listing, loads them)."""
    _load_builtins()
    return dict(KINDS[kind].table)


def listing(kind: str) -> dict[str, type]:
    """name -> class of ``kind``, plugins loaded: built-ins first (in their order), then
    plugins."""
    load_plugins()
    return dict(KINDS[kind].table)


def schemes() -> dict[str, type]:
    """name -> scheme class: built-ins first (in their order), then plugins."""
    return listing("scheme")


def schedulers() -> dict[str, type]:
    """name -> scheduler class: built-ins first, then plugins."""
    return listing("scheduler")


def straggler_models() -> dict[str, type]:
    """name -> straggler model class: built-ins first, then plugins."""
    return listing("straggler_model")


def channels() -> dict[str, type]:
    """name -> channel class: built-ins first, then plugins."""
    return listing("channel")


class UnknownName(UsageError, ValueError):
    """A name nobody registered: a usage error (one line, exit 2), and a ValueError for
    callers that catch those."""


def find(kind: str, name: str) -> type | None:
    """The class registered as ``name``, or None; plugins are loaded only if ``name`` is
    not a built-in."""
    table = KINDS[kind].table
    _load_builtins()
    if name not in table:
        load_plugins()
    return table.get(name)


def lookup(kind: str, name: str) -> type:
    """The class of ``kind`` registered as ``name`` (an error naming the choices if none)."""
    cls = find(kind, name)
    if cls is None:
        raise UnknownName(f"unknown {kind.replace('_', ' ')} {name!r} (choose from "
                          f"{', '.join(choices(kind))})")
    return cls


def scheme(name: str) -> type:
    """The scheme class registered as ``name`` (an error naming the choices if none)."""
    return lookup("scheme", name)


def scheduler(name: str) -> type:
    return lookup("scheduler", name)


def straggler_model(spec: str) -> type:
    """The straggler model class ``--stragglers SPEC`` names (``NAME`` or ``NAME:ARG``)."""
    return lookup("straggler_model", spec.split(":", 1)[0])


def channel(name: str) -> type:
    return lookup("channel", name)


def choices(kind: str) -> tuple[str, ...]:
    """The registered names of ``kind`` as a user may write them: ``NAME``, or
    ``NAME:ARGUMENT`` for a class that takes one (``argument``, e.g. trace:RUN.h5)."""
    _load_builtins()
    return tuple(f"{n}:{c.argument}" if getattr(c, "argument", None) else n
                 for n, c in KINDS[kind].table.items())


def exact_schemes() -> tuple[str, ...]:
    """Names of the schemes that decode the exact gradient (class attribute ``exact``)."""
    return tuple(n for n, c in schemes().items() if c.exact)


# ---- options: the core table with the options every registered class declares ------------
def plugin_options(kind: str) -> list:
    """The options declared by the registered classes of ``kind`` (``scheme``,
    ``scheduler``, ``straggler_model``, ``channel``), each once, in registration order."""
    out, seen = [], set()
    for cls in registered(kind).values():
        for o in getattr(cls, "options", ()):
            if o.name not in seen:
                seen.add(o.name)
                out.append(o)
    return out


def _straggler_check(table: dict):
    """``--stragglers``: a registered name, or ``NAME:ARG`` for a class taking an argument."""
    def check(x):
        name, colon, arg = x.partition(":")
        cls = table.get(name)
        takes = getattr(cls, "argument", None) if cls is not None else None
        if cls is not None and (bool(takes) == bool(colon)) and (not takes or arg):
            return None
        return f"unknown straggler model (choose from {', '.join(choices('straggler_model'))})"
    return check


def merged_options(core: list) -> list:
    """The core option table with the ``options`` of every registered class: straggler
    models' after the core ``stragglers`` group, schemes' before the core ``comm`` group,
    channels' after ``--channel``, schedulers' after the ``comm`` group. The choices of
    ``--scheme``, ``--scheduler``, ``--channel`` and ``--stragglers`` are the registered
    names."""
    _load_builtins()
    tables = {k.option: k for k in KINDS.values()}
    out = []
    for o in core:
        k = tables.get(o.name)
        if k is None:
            out.append(o)
        elif k.key == "straggler_model":
            out.append(replace(o, check=_straggler_check(k.table),
                               help=f"straggler model: {' | '.join(choices(k.key))}"
                               " (a recorded run, or a TRACE.h5 of mpicode traces import)"))
        else:
            out.append(replace(o, choices=tuple(k.table)))
    last = {g: max((i for i, o in enumerate(out) if o.group == g), default=None)
            for g in ("stragglers", "comm")}
    first_comm = next((i for i, o in enumerate(out) if o.group == "comm"), len(out))
    at_channel = next((i + 1 for i, o in enumerate(out) if o.name == "channel"), first_comm)
    # insert from the back, so the earlier positions stay valid
    inserts = [
        (last["comm"] + 1 if last["comm"] is not None else len(out),
         plugin_options("scheduler")),
        (at_channel, plugin_options("channel")),
        (first_comm, plugin_options("scheme")),
        (_end_of_first_run(out, "stragglers"), plugin_options("straggler_model")),
    ]
    for at, opts in sorted(inserts, key=lambda x: -x[0]):
        out[at:at] = opts
    return out


def _end_of_first_run(opts: list, group: str) -> int:
    """The index after the first consecutive run of ``group`` options (the stragglers block
    of the table; ``--delay-mode`` sits later, among the simulator's)."""
    i = next((i for i, o in enumerate(opts) if o.group == group), len(opts))
    while i < len(opts) and opts[i].group == group:
        i += 1
    return i


# ---- origins and plugin failures --------------------------------------------------------
def origin(obj) -> Origin | None:
    """The :class:`Origin` of a registered class, or of the class of an instance (its nearest
    registered ancestor: a built-in's subclass built by ``from_config`` counts as it)."""
    cls = obj if isinstance(obj, type) else type(obj)
    for c in cls.__mro__:
        if c in _ORIGINS:
            return _ORIGINS[c]
    return None


def origins() -> list[Origin]:
    """Every registered class's origin, plugins loaded, in registration order by kind."""
    load_plugins()
    return [_ORIGINS[c] for k in KINDS.values() for c in k.table.values() if c in _ORIGINS]


def _plugin_packages() -> dict[str, Origin]:
    """top-level package -> origin, of every plugin class (its whole package is its code)."""
    out = {}
    for o in _ORIGINS.values():
        root = o.cls.__module__.split(".")[0]
        if not o.builtin and root != "mpicode":
            out.setdefault(root, o)
    return out


def _blamed_frame(tb, packages: dict[str, Origin]):
    """(origin, frame) of the outermost traceback frame that runs a plugin's code: the
    callback mpicode called (or the first plugin function it reached). The origin is the
    class of that frame's ``self`` when it is a registered plugin, else its package's."""
    while tb is not None:
        f = tb.tb_frame
        o = packages.get(f.f_globals.get("__name__", "").split(".")[0])
        if o is not None:
            own = origin(_frame_self(f)) if _frame_self(f) is not None else None
            return (own if own is not None and not own.builtin else o), f
        tb = tb.tb_next
    return None, None


def _frame_self(frame):
    return frame.f_locals.get("self", frame.f_locals.get("cls"))


def plugin_failure(exc: BaseException, obj=None, callback: str | None = None) -> str | None:
    """The one line that names a misbehaving plugin, or None if ``exc`` is not a plugin's.

    ``obj``/``callback``: the object mpicode called and the method's name, when the caller
    knows them (e.g. ``plugin_failure(e, scheme, "react")``); else both are found in the
    traceback (the outermost frame in a plugin's package). The line::

        plugin scheme 'toy' (entry point mpicode.schemes 'toy = mpicode_toyscheme:Replicated'
        of mpicode-toyscheme 0.1) failed in Replicated.react: ValueError: boom
    """
    o = origin(obj) if obj is not None else None
    frame = None
    if o is None or o.builtin:
        o, frame = _blamed_frame(exc.__traceback__, _plugin_packages())
    if o is None or o.builtin:
        return None
    if callback is None and frame is not None:
        self = _frame_self(frame)
        owner = (self if isinstance(self, type) else type(self)).__qualname__ \
            if self is not None else None
        callback = f"{owner}.{frame.f_code.co_name}" if owner else frame.f_code.co_name
    elif callback is not None and "." not in callback:
        callback = f"{o.cls.__qualname__}.{callback}"
    return f"{o} failed in {callback or 'its code'}: {_one_line(exc)}"


def misbehaved(obj, callback: str, what: str) -> Exception:
    """The error for ``obj.callback`` returning what the engine cannot use (``what`` says
    how): :class:`PluginError` with the one line that names a plugin, or, for a built-in
    (or a class never registered), a ``RuntimeError`` naming the class and the callback."""
    e = ValueError(what)
    line = plugin_failure(e, obj, callback)
    if line is None:
        cls = obj if isinstance(obj, type) else type(obj)
        return RuntimeError(f"{cls.__qualname__}.{callback} {what}")
    err = PluginError(line)
    err.__cause__ = e
    return err


@contextlib.contextmanager
def blame(obj, callback: str):
    """``with blame(scheme, "react"): scheme.react(...)``: an exception raised inside a
    plugin's ``callback`` becomes :class:`PluginError` (its one line, the original as
    ``__cause__``); a built-in's exceptions pass through unchanged."""
    try:
        yield
    except PluginError:
        raise
    except Exception as e:
        line = plugin_failure(e, obj, callback)
        if line is None:
            raise
        raise PluginError(line) from e


# ---- listings -----------------------------------------------------------------------------
def _describe_option(o) -> dict:
    return {"flag": o.flag, "name": o.name, "default": o.default, "help": o.help,
            "choices": list(o.choices) if o.choices else None}


def _entry(kind: str, name: str, c: type) -> dict:
    o = _ORIGINS.get(c)
    e = {"name": name, "class": f"{c.__module__}.{c.__qualname__}"}
    if kind == "scheme":
        e["exact"] = bool(c.exact)
    if getattr(c, "argument", None):
        e["argument"] = c.argument
    e["origin"] = o.source() if o is not None else "unknown"
    if o is not None and o.distribution:
        e["distribution"] = o.distribution
    e["options"] = [_describe_option(x) for x in getattr(c, "options", ())]
    e["log_fields"] = dict(getattr(c, "log_fields", {}) or {})
    return e


def describe(as_json: bool = False, kinds=("scheme", "scheduler")) -> str:
    """``mpicode schemes`` (schemes and schedulers) and ``mpicode plugins`` (``kinds``: all
    four): every registered class, its origin and its options (flag, default, help), as
    text or JSON."""
    import json
    data = {KINDS[k].title.replace(" ", "_"): [_entry(k, n, c) for n, c in listing(k).items()]
            for k in kinds}
    if as_json:
        return json.dumps(data, indent=2, default=str)
    lines = []
    for title, entries in data.items():
        lines.append(f"{title.replace('_', ' ')}:")
        for e in entries:
            tag = ("exact" if e["exact"] else "not exact") if "exact" in e else ""
            name = e["name"] + (f":{e['argument']}" if "argument" in e else "")
            where = "" if e["origin"] == "built-in" else f"  [{e['origin']}]"
            lines.append(f"  {name:<20} {tag:<10} {e['class']}{where}")
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
