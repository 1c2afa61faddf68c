"""Layered configuration: package defaults < profile < TOML file (``--config``) < command
line; and the merge of a resumed run's stored configuration with the new command line.

Every option is declared once: in :data:`OPTIONS` (the core table,
:mod:`mpicode.core_options`), or on the scheme, scheduler, straggler model or channel class
that owns it (``options = (Option(...), ...)``, see docs/extending.md).
:func:`all_options` joins them; the argparse parser, the TOML loader, validation and
``mpicode config show`` are all derived from it, so an option can never exist in one place
and not the other.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpicode import registry
from mpicode.core_options import MODELS, OPTIMIZERS, OPTIONS, SIMULATE_ONLY  # noqa: F401
from mpicode.errors import UsageError
from mpicode.io import safefile
from mpicode.models.failures import check_failure_options
from mpicode.options import (  # noqa: F401  (old names: mpicode.config.X)
    Option,
    _bool,
    _finite_float,
    _is_pos_float,
    _optional_float,
    _optional_int,
    boolean,
    default_text,
    finite_float,
    hidden_sizes,
    nearest,
    nonneg,
    optional_float,
    optional_int,
    optional_positive,
    positive,
    read_toml,
    unit_closed,
    unit_open_closed,
    unit_right_open,
)
from mpicode.profile import load_profile


def all_options() -> list[Option]:
    """:data:`OPTIONS` and the ``options`` of every registered scheme, scheduler, straggler
    model and channel (:func:`mpicode.registry.merged_options`; plugins only once loaded):
    flags, TOML keys, validation and ``config show`` all derive from this list."""
    return registry.merged_options(OPTIONS)


def by_name() -> dict[str, Option]:
    return {o.name: o for o in all_options()}


def __getattr__(name):  # old names: every option by name, the registered names as tuples
    if name == "BY_NAME":
        return by_name()
    if name == "STRAGGLERS":  # the names that take no argument (trace:RUN.h5 does)
        return tuple(n for n, c in registry.straggler_models().items()
                     if not getattr(c, "argument", None))
    old = {"SCHEMES": registry.schemes, "SCHEDULERS": registry.schedulers,
           "CHANNELS": registry.channels}
    if name in old:
        return tuple(old[name]())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def defaults() -> Config:
    """Every option (core and registered) at its default."""
    opts = all_options()
    return Config({o.name: o.default for o in opts}, {o.name: "default" for o in opts})


@dataclass
class Config:
    """The effective configuration: attribute access, JSON-serialisable values."""

    values: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)  # name -> "default" | file | "cli"

    def __getattr__(self, name):
        try:
            return self.__dict__["values"][name]
        except KeyError as e:
            raise AttributeError(name) from e

    def to_json(self) -> str:
        return json.dumps(self.values, sort_keys=True)

    def replace(self, **kw) -> Config:
        v = dict(self.values)
        v.update(kw)
        return Config(v, dict(self.source))



def add_options(parser: argparse.ArgumentParser, hide=()) -> None:
    """Add every option of the table, each defaulting to 'not given' (SUPPRESS); the options
    named in ``hide`` are accepted but not listed in ``--help``."""
    parser.add_argument("--config", metavar="FILE.toml", default=argparse.SUPPRESS,
                        help="TOML file with any of the options below (the command line wins)")
    groups: dict[str, Any] = {}
    for o in all_options():
        g = groups.setdefault(o.group, parser.add_argument_group(o.group))
        if o.name in hide:
            g.add_argument(o.flag, dest=o.name, default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS, **({"action": "store_true"} if o.flag_only
                                                      else {}))
            continue
        if o.flag_only:
            g.add_argument(o.flag, action="store_true", default=argparse.SUPPRESS, help=o.help)
        elif o.repeat:
            g.add_argument(o.flag, dest=o.name, action="append", default=argparse.SUPPRESS,
                           metavar=o.metavar, help=o.help + " (repeatable)")
        elif o.type is _bool:  # --NAME [BOOL] and --no-NAME
            g.add_argument(o.flag, dest=o.name, nargs="?", const="true", metavar="BOOL",
                           default=argparse.SUPPRESS, help=f"{o.help} (default: {o.default})")
            g.add_argument("--no-" + o.flag[2:], dest=o.name, action="store_const",
                           const="false", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        else:
            g.add_argument(o.flag, dest=o.name, default=argparse.SUPPRESS, metavar=o.metavar,
                           help=o.help + default_text(o)
                           + (f"; one of {', '.join(o.choices)}" if o.choices else ""))


def _coerce(o: Option, raw, where: str):
    if raw is None and o.default is None:
        return None
    if o.repeat and isinstance(raw, (list, tuple)):  # --fail A --fail B, or a TOML list
        if not all(isinstance(x, str) for x in raw):
            raise UsageError(f"{where}{o.flag}: invalid value {raw!r}")
        raw = ",".join(x for x in raw if x)
    try:
        if o.type in (int, _optional_int) and isinstance(raw, float) and raw != int(raw):
            raise ValueError(raw)
        if o.type is not _bool and isinstance(raw, bool):  # TOML true/false for a number
            raise ValueError(raw)
        v = o.type(raw) if not isinstance(raw, str) or o.type is not str else raw
        if o.type is str and not isinstance(raw, str):
            raise ValueError(raw)
    except (TypeError, ValueError, OverflowError):
        why = ""
        if o.type in (_finite_float, _optional_float):
            try:
                why = "" if math.isfinite(float(raw)) else ": must be a finite number"
            except (TypeError, ValueError):
                pass
        raise UsageError(f"{where}{o.flag}: invalid value {raw!r}{why}") from None
    if o.choices and v not in o.choices:
        raise UsageError(f"{where}{o.flag}: unknown value {v!r} "
                         f"(choose from {', '.join(o.choices)})")
    if o.check and v is not None:
        msg = o.check(v)
        if msg:
            raise UsageError(f"{where}{o.flag}: {v!r} {msg}")
    return v


def load_toml(path: str) -> dict:
    data = read_toml(path, f"config file {path}", f"config file not found: {path}")
    items = []
    sections = {o.group for o in all_options()}
    for k, v in data.items():
        # sections are allowed for readability ([stragglers], [two-stage]): keys stay global
        if isinstance(v, dict):
            if k not in sections:
                raise UsageError(f"config file {path}: unknown section [{k}]"
                                 f"{nearest(k, sections)} (sections: "
                                 f"{', '.join(sorted(sections))})")
            items += [(k2, v2, f" (in [{k}])") for k2, v2 in v.items()]
        else:
            items.append((k, v, ""))
    out = {}
    known = by_name()
    for k, v, section in items:
        name = k.replace("-", "_")
        if name not in known or isinstance(v, dict):
            raise UsageError(f"config file {path}: unknown key {k!r}{section}"
                             f"{nearest(name, known)}")
        if name in out:
            raise UsageError(f"config file {path}: key {k!r} given twice")
        out[name] = v
    return out


def resolve(args: argparse.Namespace) -> Config:
    """Build the effective configuration from parsed CLI args (defaults < file < CLI).

    Plugins are loaded only if the built-ins do not suffice: a key of the ``--config`` file
    or a value (``--scheme toy``) that only a plugin knows (docs/extending.md)."""
    try:
        return _resolve(args)
    except UsageError:
        if not registry.load_plugins():
            raise
    return _resolve(args)


def _resolve(args: argparse.Namespace) -> Config:
    known = by_name()
    values = {o.name: o.default for o in known.values()}
    source = {o.name: "default" for o in known.values()}
    given = vars(args)
    if "config" in given and given["config"]:
        for name, raw in load_toml(given["config"]).items():
            values[name] = _coerce(known[name], raw, f"config file {given['config']}: ")
            source[name] = given["config"]
    for name, raw in given.items():
        if name in known:
            values[name] = _coerce(known[name], raw, "")
            source[name] = "cli"
    if values["profile"]:  # under the file and the command line: they override it
        path = values["profile"]
        for name, raw in load_profile(path).items():
            v = _coerce(known[name], raw, f"profile {path}: ")
            if source[name] == "default":
                values[name], source[name] = v, path
    return Config(values, source)


def validate_for_size(cfg: Config, n_workers: int) -> Config:
    """Cross-option checks that need N, then the scheme's own (its ``validate_size``; an
    unknown name is a UsageError too); fills K = 4N when not given."""
    if n_workers < 1:
        raise UsageError("too few ranks: need at least 2 (1 coordinator + 1 worker); "
                         "launch with mpiexec -n N+1")
    K = cfg.partitions if cfg.partitions is not None else 4 * n_workers
    if K < n_workers:
        raise UsageError(f"--partitions {K} must be >= number of workers {n_workers}")
    cls = registry.scheme(cfg.scheme)
    cls.validate_size(cfg, n_workers, K)
    check_failure_options(cfg, cls, n_workers)
    if cfg.batch_size is not None and cfg.batch_size < K:
        raise UsageError(f"--batch-size {cfg.batch_size} must be >= --partitions {K} "
                         f"(every partition gives B/K rows)")
    if cfg.bottleneck is not None and cfg.access != "wired":
        raise UsageError(f"--bottleneck {cfg.bottleneck:g} needs --access wired (the other "
                         "access modes share one slot in time)")
    if cfg.epochs is not None and cfg.source.get("epochs") not in (None, "default", "resumed") \
            and cfg.source.get("iterations") not in (None, "default", "resumed"):
        raise UsageError("give --epochs or --iterations, not both")
    return cfg.replace(partitions=K, n_workers=n_workers)


# options a resumed run may change: nothing its attributes and rows say depends on them
RESUME_MAY_CHANGE = ("iterations", "checkpoint_every", "flush_every", "progress", "quiet",
                     "verbose", "resume", "out", "force",
                     # what the run does about its next failure (a run stopped by one under
                     # abort is resumed with continue)
                     "on_failure")


def merge_resumed(cfg: Config, stored: dict) -> Config:
    """The configuration of a resumed run: the stored one, with what this command line (or
    its --config file) gives on top. Only RESUME_MAY_CHANGE may differ (e.g. a larger
    ``--iterations``); other changed options are refused by name, and so is ``--out``."""
    for kind in registry.KINDS.values():  # a stored plugin's name loads the plugins
        if isinstance(stored.get(kind.option), str):
            registry.find(kind.key, stored[kind.option].split(":", 1)[0])
    out = cfg.resume[:-5] if cfg.resume.endswith(".part") else cfg.resume
    known = by_name()  # core options and those of every registered class
    values = {o.name: o.default for o in known.values()}
    values.update({k: v for k, v in stored.items() if k in known})
    values["workers"] = values["workers"] or stored.get("n_workers")  # simulate's default N
    given = [n for n, src in cfg.source.items() if src != "default" and n in known]
    if "out" in given and Path(cfg.out.removesuffix(".part")).absolute() != Path(out).absolute():
        raise UsageError(f"--out cannot be used with --resume (the run is written back to {out})")
    changed = [f"{known[n].flag} (stored {values[n]!r}, given {cfg.values[n]!r})"
               for n in given if n not in RESUME_MAY_CHANGE and cfg.values[n] != values[n]]
    if changed:
        raise UsageError(f"--resume {cfg.resume}: cannot change {', '.join(changed)}; only "
                         f"{', '.join('--' + n.replace('_', '-') for n in RESUME_MAY_CHANGE[:6])}"
                         " may change")
    source = {k: "resumed" for k in values}
    for name in given:
        if name not in ("resume", "out", "force"):
            values[name], source[name] = cfg.values[name], cfg.source[name]
    values.update(resume=cfg.resume, out=out, force=True)
    return Config(values, source)


def show(cfg: Config) -> str:
    """TOML text of the effective configuration, each value's source as a comment."""
    lines = []
    for o in all_options():
        v = cfg.values.get(o.name)
        if v is None:
            text = f"# {o.name} = (unset)"
        else:
            text = f"{o.name} = {json.dumps(v)}"
        note = AUTO_NOTES.get(o.name, "") if v == "auto" else ""
        lines.append(f"{text:<48} # {cfg.source.get(o.name, 'default')}{note}")
    return "\n".join(lines)


REFERENCE_START, REFERENCE_END = "<!-- options:start -->", "<!-- options:end -->"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def reference() -> str:
    """The option reference of docs/user-guide.md (``mpicode config reference``): every
    option of ``train`` and ``simulate`` (the core table, the cost model's and every
    registered class's, plugins' included once loaded), one table per group in the order of
    ``--help``, between :data:`REFERENCE_START` and :data:`REFERENCE_END`."""
    groups: dict[str, list[Option]] = {}
    for o in all_options():
        groups.setdefault(o.group, []).append(o)
    out = [REFERENCE_START, "",
           "_Generated by `mpicode config reference --write docs/user-guide.md` (`make docs`) "
           "from the option tables; do not edit by hand._", ""]
    for g, opts in groups.items():
        out += [f"#### {g}", "", "| option | default | meaning |", "|---|---|---|"]
        for o in opts:
            flag = o.flag if o.flag_only or o.metavar is None else f"{o.flag} {o.metavar}"
            default = "-" if o.default is None or o.default == "" else f"`{o.default}`"
            meaning = o.help + (f"; one of {', '.join(map(str, o.choices))}"
                                if o.choices else "")
            if o.name in SIMULATE_ONLY:
                meaning += " (`simulate` only)"
            out.append(f"| `{_cell(flag)}` | {_cell(default)} | {_cell(meaning)} |")
        out.append("")
    out.append(REFERENCE_END)
    return "\n".join(out)



# what an option's ``auto`` means, printed by ``config show`` beside it
AUTO_NOTES = {
    "eval_every": "; auto: evaluate the first iteration, time 3 more, then every E "
                  "iterations so evaluation takes <= 5% of the time, and the last (E is "
                  "logged and stored as the run-log attribute eval_every_auto; in virtual "
                  "time E = 1 unless the cost model charges coord_eval_s)",
}


def write_reference(path: str | None) -> int:
    """``mpicode config reference [--write FILE.md]``."""
    text = reference()
    if path is None:
        print(text)
        return 0
    try:
        doc = Path(path).read_text()
    except OSError as e:
        raise UsageError(f"--write {path}: {e.strerror or e}") from None
    if REFERENCE_START not in doc or REFERENCE_END not in doc:
        raise UsageError(f"--write {path}: no {REFERENCE_START} ... {REFERENCE_END} markers")
    a, b = doc.index(REFERENCE_START), doc.index(REFERENCE_END) + len(REFERENCE_END)
    safefile.write_text(path, doc[:a] + text + doc[b:])
    print(f"wrote the option reference into {path}")
    return 0
