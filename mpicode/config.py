"""Layered configuration: package defaults < TOML file (``--config``) < command line.

Every option is declared once: in :data:`OPTIONS` (the core table), or on the scheme or
scheduler class that owns it (``options = (Option(...), ...)``, see docs/extending.md).
:func:`all_options` joins them; the argparse parser, the TOML loader, validation and
``mpicode config show`` are all derived from it, so an option can never exist in one place
and not the other.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from typing import Any

from mpicode.options import (  # noqa: F401  (re-exported: mpicode.config.X)
    Option,
    UsageError,
    _bool,
    _finite_float,
    _is_pos_float,
    _optional_float,
    _optional_int,
    dataset_file,
    default_text,
    hidden_sizes,
    nearest,
    nonneg,
    optional_positive,
    positive,
    read_toml,
    unit_closed,
    unit_open_closed,
    unit_right_open,
)
from mpicode.profile import COST_OPTIONS, load_profile

MODELS = ("logistic", "softmax", "least-squares", "mlp")
OPTIMIZERS = ("gd", "momentum", "nesterov", "adam")
CHANNELS = ("ideal", "constant", "rayleigh", "gilbert-elliott", "trace")
STRAGGLERS = ("none", "shifted-exp", "exp-per-iteration", "bimodal", "pareto", "gilbert-elliott")
# plus "trace:RUN.h5" (replay a recorded run), checked in validation

OPTIONS: list[Option] = [
    # --- run --------------------------------------------------------------------------
    Option("scheme", str, "uncoded", "computing-phase scheme", group="scheme"),  # + registry
    Option("stragglers_tolerated", int, 1, "stragglers S the scheme tolerates", check=nonneg,
           group="scheme", metavar="S"),
    Option("dataset", str, "synthetic", "dataset NAME (data/NAME.h5 or a built-in) or PATH",
           group="data", check=dataset_file),
    Option("samples", int, 4000, "rows of the built-in synthetic dataset", check=positive,
           group="data"),
    Option("features", int, 50, "columns of the built-in synthetic dataset", check=positive,
           group="data"),
    Option("model", str, "logistic", "model to train", choices=MODELS, group="model"),
    Option("dtype", str, "float64", "floating-point type of data and kernels",
           choices=("float64", "float32"), group="model"),
    Option("partitioning", str, "iid",
           "how rows go to partitions: iid | sorted (by label) | dirichlet:ALPHA (label skew)",
           group="data", check=lambda x: None if x in ("iid", "sorted") or (
               x.startswith("dirichlet:") and _is_pos_float(x[10:]))
           else "must be iid, sorted or dirichlet:ALPHA with ALPHA > 0"),
    Option("iterations", int, 50, "gradient-descent iterations T", check=positive, metavar="T"),
    Option("lr", _finite_float, 0.5, "learning rate", check=positive, group="model"),
    Option("l2", _finite_float, 1e-4, "L2 regularisation weight", check=nonneg, group="model"),
    Option("hidden", str, "64", "mlp: hidden layer widths H or H1,H2", check=hidden_sizes,
           group="model", metavar="H[,H2]"),
    Option("activation", str, "relu", "mlp: hidden activation", choices=("relu", "tanh"),
           group="model"),
    Option("batch_size", _optional_int, None,
           "mini-batch B per iteration, B/K rows of every partition (default: full batch)",
           check=optional_positive, group="model", metavar="B"),
    Option("epochs", _optional_float, None,
           "run ceil(E n_train / B) iterations instead of --iterations", check=optional_positive,
           group="model", metavar="E"),
    Option("optimizer", str, "gd", "rank-0 update rule", choices=OPTIMIZERS, group="model"),
    Option("momentum", _finite_float, 0.9, "momentum/nesterov: coefficient mu",
           check=unit_right_open, group="model"),
    Option("beta1", _finite_float, 0.9, "adam: first-moment decay", check=unit_right_open,
           group="model"),
    Option("beta2", _finite_float, 0.999, "adam: second-moment decay", check=unit_right_open,
           group="model"),
    Option("eps", _finite_float, 1e-8, "adam: denominator epsilon", check=positive,
           group="model"),
    Option("partitions", _optional_int, None, "micro-partitions K (default 4N)",
           check=optional_positive, metavar="K", group="data"),
    Option("seed", int, 0, "seed of everything random (data, stragglers, codes)", check=nonneg),
    Option("out", str, "runs/run.h5", "HDF5 run log to write"),
    Option("force", _bool, False, "overwrite an existing --out", flag_only=True),
    Option("quiet", _bool, False, "no progress bar, only warnings (implies --progress none)",
           flag_only=True),
    Option("progress", str, "auto", "stderr progress: auto (a bar on a terminal, else a line "
           "every few seconds)", choices=("auto", "bar", "lines", "none")),
    Option("verbose", _bool, False, "debug logging, on every rank", flag_only=True),
    Option("eval_every", int, 1, "evaluate train/test loss every E iterations", check=positive),
    # --- stragglers (docs/design.md §5) ------------------------------------------------
    Option("stragglers", str, "none",
           "straggler model: " + " | ".join(STRAGGLERS) + " | trace:RUN.h5 (a recorded run)"
           " | trace:TRACE.h5 (mpicode traces import)",
           check=lambda x: None if x in STRAGGLERS or (x.startswith("trace:") and len(x) > 6)
           else f"unknown straggler model (choose from {', '.join(STRAGGLERS)}, trace:RUN.h5)",
           group="stragglers"),
    Option("trace_map", str, "refuse",
           "trace:TRACE.h5 with more workers or iterations than the trace: refuse, cycle "
           "(iterations wrap) or tile (workers and iterations wrap)",
           choices=("refuse", "cycle", "tile"), group="stragglers"),
    Option("delay_unit", _finite_float, 0.01,
           "emulated compute seconds for one worker's fair share (K/N partitions)",
           check=nonneg, group="stragglers"),
    Option("task_overhead", _finite_float, 0.0,
           "seconds added to every task (dispatch, read, reply): splitting work has a price",
           check=nonneg, group="stragglers", metavar="SECONDS"),
    Option("delay_form", str, "worker",
           "shifted-exp/pareto random rate: drawn once per worker and iteration (worker: a "
           "slow machine is slow for all its tasks) or afresh per task (task)",
           choices=("worker", "task"), group="stragglers"),
    Option("shift", _finite_float, 1.0, "shifted-exp: shift a, in delay units per share",
           check=nonneg, group="stragglers"),
    Option("mu", _finite_float, 1.0, "shifted-exp: rate mu; tail mean = load/mu delay units",
           check=positive, group="stragglers"),
    Option("delay_mean", _finite_float, 2.0,
           "exp-per-iteration: mean of the one Exp delay per worker and iteration, in units",
           check=nonneg, group="stragglers"),
    Option("slow_fraction", _finite_float, 0.25, "bimodal: fraction of persistently slow workers",
           check=unit_closed, group="stragglers"),
    Option("slowdown", _finite_float, 5.0, "bimodal/gilbert-elliott: slowdown factor",
           check=lambda x: None if x >= 1 else "must be >= 1", group="stragglers"),
    Option("pareto_shape", _finite_float, 2.5, "pareto: tail index", check=positive,
           group="stragglers"),
    Option("ge_p_bad", _finite_float, 0.1, "gilbert-elliott: P(good -> bad) per iteration",
           check=unit_closed, group="stragglers"),
    Option("ge_p_good", _finite_float, 0.5, "gilbert-elliott: P(bad -> good) per iteration",
           check=unit_closed, group="stragglers"),
]

OPTIONS += [
    # --- communication phase (docs/design.md §4) ---------------------------------------
    Option("channel", str, "ideal", "uplink channel model", choices=CHANNELS, group="comm"),
    Option("channel_trace", str, "", "trace channel: file of per-slot rates (bytes/slot)",
           group="comm"),
    Option("scheduler", str, "lyapunov", "uplink scheduler (when --channel is not ideal)",
           group="comm"),  # choices: the registry
    Option("slot_ms", _finite_float, 2.0, "slot length tau_s in ms", check=positive,
           group="comm"),
    Option("bandwidth", _finite_float, 5e6, "channel bandwidth B in bytes/s", check=positive,
           group="comm"),
    Option("snr_db", _finite_float, 10.0, "mean SNR (dB) of the middle worker", group="comm"),
    Option("snr_spread_db", _finite_float, 20.0, "near/far spread of mean SNR across workers (dB)",
           check=nonneg, group="comm"),
    Option("access", str, "tdma", "one worker per slot (tdma) or split among the top m (ofdma)",
           choices=("tdma", "ofdma"), group="comm"),
    Option("log_slots", _bool, False, "record per-slot scheduler rows under /slots",
           flag_only=True, group="comm"),
    # --- simulator (docs/design.md §8) ---------------------------------------------------
    Option("workers", _optional_int, None, "simulate: number of virtual workers N",
           check=optional_positive, group="simulate"),
    Option("compute", str, "real", "simulate: real gradients or none (timing only)",
           choices=("real", "none"), group="simulate"),
    Option("partition_cost", _optional_float, None,
           "simulate: compute seconds per partition (default: the documented kernel model, "
           "1 us + rows x features / 2e9 s; see --measure-partition-cost)",
           check=optional_positive, group="simulate"),
    Option("measure_partition_cost", _bool, False,
           "simulate: time the fused kernel on this machine for the default partition cost "
           "(runs then differ between machines and loads)", flag_only=True, group="simulate"),
    Option("delay_mode", str, "sleep", "injected delays as real sleeps or virtual time",
           choices=("sleep", "virtual"), group="stragglers"),
    # --- reliability -----------------------------------------------------------------------
    Option("checkpoint_every", int, 0, "store a checkpoint every K iterations (0: only at the end)",
           check=nonneg, group="reliability"),
    Option("resume", str, "", "continue the run stored in this HDF5 file (in place)",
           group="reliability"),
    Option("flush_every", _finite_float, 1.0, "write log rows every SECONDS (0: every "
           "iteration); a kill loses at most these", check=nonneg, group="reliability"),
    Option("dead_after", int, 0, "leave a worker out after M missed iterations (0: never)",
           check=nonneg, group="reliability"),
    Option("stop_timeout", _finite_float, 30.0,
           "train: seconds to wait for every worker to acknowledge STOP; then the run log is "
           "closed and the job aborted", check=positive, group="reliability"),
    Option("startup_timeout", _finite_float, 600.0,
           "train: seconds rank 0 waits for every worker at each start-up step (loading the "
           "data, compiling); then it names the ranks that did not answer and the job ends",
           check=positive, group="reliability"),
]

OPTIONS += COST_OPTIONS
finite_float, optional_float, optional_int, boolean = _finite_float, _optional_float, \
    _optional_int, _bool  # public: for the options schemes and schedulers declare


def all_options() -> list[Option]:
    """:data:`OPTIONS` and the ``options`` of every registered scheme and scheduler
    (:func:`mpicode.registry.merged_options`): flags, TOML keys, validation and ``config
    show`` all derive from this list."""
    from mpicode.registry import merged_options
    return merged_options(OPTIONS)


def by_name() -> dict[str, Option]:
    return {o.name: o for o in all_options()}


def __getattr__(name):  # old names: every option by name, the registered names as tuples
    from mpicode import registry
    old = {"BY_NAME": by_name, "SCHEMES": registry.schemes, "SCHEDULERS": registry.schedulers}
    if name in old:
        return old[name]() if name == "BY_NAME" else tuple(old[name]())
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


SIMULATE_ONLY = ("workers", "compute", "measure_partition_cost")


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
    """Build the effective configuration from parsed CLI args (defaults < file < CLI)."""
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
    from mpicode.registry import scheme
    scheme(cfg.scheme).validate_size(cfg, n_workers, K)
    if cfg.batch_size is not None and cfg.batch_size < K:
        raise UsageError(f"--batch-size {cfg.batch_size} must be >= --partitions {K} "
                         f"(every partition gives B/K rows)")
    if cfg.epochs is not None and cfg.source.get("epochs") not in (None, "default", "resumed") \
            and cfg.source.get("iterations") not in (None, "default", "resumed"):
        raise UsageError("give --epochs or --iterations, not both")
    return cfg.replace(partitions=K, n_workers=n_workers)


def merge_resumed(cfg: Config, stored: dict) -> Config:
    """The configuration of a resumed run (see :func:`mpicode.io.runfile.merge_config`)."""
    from mpicode.io.runfile import merge_config
    return merge_config(cfg, stored)


def show(cfg: Config) -> str:
    """TOML text of the effective configuration, each value's source as a comment."""
    lines = []
    for o in all_options():
        v = cfg.values.get(o.name)
        if v is None:
            text = f"# {o.name} = (unset)"
        else:
            text = f"{o.name} = {json.dumps(v)}"
        lines.append(f"{text:<48} # {cfg.source.get(o.name, 'default')}")
    return "\n".join(lines)
