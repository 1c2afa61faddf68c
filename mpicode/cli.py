"""Command line: ``mpicode train | simulate | report | sweep | data | traces | config |
schemes ...``.

``train`` needs MPI ranks::

    mpiexec -n 5 python -m mpi4py -m mpicode train --config jobs/configs/demo.toml

The other commands are serial. Any usage error is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from mpicode import __version__, memory, registry
from mpicode.config import REFERENCE_END, REFERENCE_START, add_options, reference, resolve, show
from mpicode.core_options import SIMULATE_ONLY
from mpicode.engine import faults
from mpicode.engine.signals import STOP, install_stop_handlers
from mpicode.errors import UsageError, WriteError
from mpicode.io import safefile

BENCHES = {
    "kernels": "fused kernels vs numpy vs the read-once floor",
    "schemes": "all schemes x three straggler scenarios: time to target loss, load",
    "scale": "policy cost per iteration against N (16 .. 10,000): two-stage vs cyclic",
    "comm": "uplink schedulers: streaming and gradient regimes (virtual time), then end to "
            "end training time in the MPI runtime",
    "messaging": "gradient delivery bandwidth in the runtime vs an mpi4py ping-pong (2 ranks)",
    "twin": "real MPI runs vs their calibrated simulation (same trace): iteration time, time "
            "to target, stage-2 fraction, load",
    "overhead": "rank 0's per-iteration cost by phase vs the floor (slowest worker's compute "
                "+ Bcast/Reduce), N = 4, 8, 16, 10^3..10^6 parameters",
    "runlog": "rank 0's cost of logging one iteration (RunLog.append), N = 4 and 64",
    "policy": "every scheme's own CPU per result event and per iteration against N "
              "(64 .. 100,000, in process), with the log-log slope",
}
BENCH_ARGS = {
    "comm": [("--no-e2e", {"action": "store_true",
                           "help": "skip the end-to-end MPI part"})],
    "twin": [("--keep", {"metavar": "DIR", "default": None,
                         "help": "keep the profiles and the real runs in DIR"}),
             ("--workers", {"metavar": "N,N", "default": None,
                            "help": "these N (default 4,8; 16,32 for the scale targets)"}),
             ("--schemes", {"metavar": "A,B", "default": None,
                            "help": "only these exact schemes (and uncoded)"})],
    "overhead": [("--workers", {"metavar": "N,N", "default": None,
                                "help": "only these N (default 4,8,16)"}),
                 ("--sizes", {"metavar": "LABEL,LABEL", "default": None,
                              "help": "only these model sizes: demo,1e3,1e4,1e5,1e6"})],
    "policy": [("--workers", {"metavar": "N,N", "default": None,
                              "help": "these N (default 64,1024,10000,100000)"}),
               ("--budget", {"type": float, "default": None, "metavar": "SECONDS",
                             "help": "CPU seconds per scheme and N before it is stopped "
                                     "(default 120)"})],
    "schemes": [("--workers", {"type": int, "default": 8, "help": "workers N (default 8)"}),
                ("--mode", {"choices": ("mpi", "sim"), "default": "mpi",
                            "help": "real MPI ranks (default) or the simulator"})],
}


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message):
        raise UsageError(message)


REPORT_COLUMNS = """timing columns:
  iter_s, p95_s         mean and 95th percentile of an iteration's time (mean_iter_s,
                        p95_iter_s): t_end - t_start less rank 0's evaluation (eval_s),
                        the same whatever --eval-every
  vs_oracle             mean_iter_s over the clairvoyant oracle's mean time; '-' without
                        oracle_s or when the oracle's time is under 5% of an iteration's
  total_s               wall time of the run, evaluation and everything else included
  loss (final_loss)     the last model's training loss: evaluated, else workers' train_loss
"""


def add_report_views(rp) -> None:
    """``report`` options of the table views and plots added with issue 17."""
    rp.add_argument("--wide", action="store_true",
                    help="table: every column (default: a compact set that fits 100 columns)")
    rp.add_argument("--columns", metavar="A,B,...", default=None,
                    help="only these columns (any key of --format json)")
    rp.add_argument("--group-by", metavar="KEY,...", default=None,
                    help="aggregate runs by these summary columns or config keys (e.g. "
                         "scheme,stragglers,N): n, mean and 95%% CI; plots get error bars. "
                         "Runs of one group that differ in more than the seed (mode, N, "
                         "dataset, an option) are refused, naming the keys")
    rp.add_argument("--allow-mixed", action="store_true",
                    help="--group-by: average runs that differ in more than the seed anyway")
    rp.add_argument("--workers", action="store_true",
                    help="per-worker straggler scores (slowdown against the iteration median)")
    rp.add_argument("--log-loss", action="store_true", help="plots: log-scale loss axes")


def add_sweep(sub) -> None:
    """``mpicode sweep FILE``: the local runner of jobs/make_sweep.py sweep files."""
    sw = sub.add_parser("sweep", help="run a sweep file (jobs/make_sweep.py) locally, one cell "
                        "after another")
    sw.add_argument("file", metavar="FILE", help="sweep file: one line of train options a cell")
    sw.add_argument("--np", type=int, default=5, metavar="N",
                    help="MPI ranks per cell, 1 coordinator + N-1 workers (default 5)")
    sw.add_argument("--config", default=None, metavar="CONFIG.toml",
                    help="config every cell starts from (default: none)")
    sw.add_argument("--out-dir", default=None, metavar="DIR",
                    help="run files go here (default runs/sweep_<FILE stem>)")
    sw.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")


def add_data(sub) -> None:
    """``mpicode data synth | import | bundled``."""
    dp = sub.add_parser("data", help="datasets: synth, import, bundled")
    dsub = dp.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    sy = dsub.add_parser("synth", help="write a seeded synthetic binary-classification dataset")
    sy.add_argument("--samples", type=int, default=4000,
                    help="training rows (a test set of 20%% more is added; default 4000)")
    sy.add_argument("--features", type=int, default=50, help="columns (default 50)")
    sy.add_argument("--seed", type=int, default=0, help="seed of the data (default 0)")
    sy.add_argument("--out", required=True, metavar="FILE.h5", help="dataset file to write")
    sy.add_argument("--force", action="store_true", help="overwrite an existing --out")
    from mpicode.io.dataimport import add_import_arguments  # lazy: after stop handlers
    im = dsub.add_parser("import", help="import CSV, LIBSVM/svmlight, NPZ or a scikit-learn "
                         "bundled dataset into data/NAME.h5")
    add_import_arguments(im)
    bu = dsub.add_parser("bundled", help="build digits, breast_cancer, diabetes (scikit-learn)")
    bu.add_argument("--out-dir", default="data", metavar="DIR",
                    help="where NAME.h5 go (default data/)")
    bu.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    bu.add_argument("--force", action="store_true", help="overwrite existing files")


def build_parser() -> Parser:
    p = Parser(prog="mpicode", description="Straggler-tolerant distributed gradient descent "
               "on MPI (coded computing phase, Lyapunov-scheduled communication phase).")
    p.add_argument("--version", action="version", version=f"mpicode {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    tr = sub.add_parser("train", help="train under MPI: mpiexec -n N+1 python -m mpi4py -m "
                        "mpicode train ...")
    add_options(tr, hide=SIMULATE_ONLY)

    si = sub.add_parser("simulate", help="the same run in virtual time (no MPI): "
                        "discrete-event simulator")
    add_options(si)

    rp = sub.add_parser(
        "report", help="comparison table (and plots) of HDF5 runs",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=REPORT_COLUMNS)
    rp.add_argument("runs", nargs="+", metavar="RUN.h5",
                    help="run logs (RUN.h5.part, a run in progress, is read too)")
    rp.add_argument("--format", choices=("table", "csv", "json"), default="table",
                    help="output format (default: table; csv/json print notes on stderr)")
    rp.add_argument("--target-loss", type=float, default=None, metavar="X",
                    help="also report when the loss (else train_loss) first reached X")
    rp.add_argument("--plots", metavar="DIR", default=None,
                    help="write PNG plots into DIR (needs matplotlib)")
    rp.add_argument("--gantt-run", metavar="RUN", default=None,
                    help="run of the Gantt timeline: one of RUN.h5, or its 0-based index "
                         "(default: the first)")
    rp.add_argument("--gantt-iterations", metavar="A:B", default=None,
                    help="iterations A..B-1 of the Gantt timeline (default 0:5)")
    add_report_views(rp)
    add_sweep(sub)

    add_data(sub)
    add_traces(sub)
    add_benches(sub)

    cp = sub.add_parser("config", help="configuration: show")
    csub = cp.add_subparsers(dest="config_command", required=True, parser_class=Parser)
    sh = csub.add_parser("show", help="print the effective configuration (TOML)")
    add_options(sh)
    rf = csub.add_parser("reference", help="print the option reference of docs/user-guide.md "
                         "(Markdown tables)")
    rf.add_argument("--write", metavar="FILE.md", default=None,
                    help="replace the reference between its markers in FILE.md instead")

    sub.add_parser("warmup", help="compile every numba kernel into the on-disk cache")
    add_calibrate(sub)
    add_schemes(sub)
    return p


def add_schemes(sub) -> None:
    sc = sub.add_parser("schemes", help="every registered scheme and scheduler (built-in and "
                        "plugins) with its options")
    sc.add_argument("--json", action="store_true", help="print JSON")
    pl = sub.add_parser("plugins", help="every registered scheme, scheduler, straggler model "
                        "and channel: where it comes from (built-in or entry point) and its "
                        "options")
    pl.add_argument("--json", action="store_true", help="print JSON")


def add_traces(sub) -> None:
    tp = sub.add_parser("traces", help="straggler traces: import (CSV, Parquet)")
    tsub = tp.add_subparsers(dest="traces_command", required=True, parser_class=Parser,
                             metavar="import")
    from mpicode.io.traces import (
        add_import_arguments as add_trace_arguments,  # lazy: after stop handlers
    )
    add_trace_arguments(tsub.add_parser(
        "import", help="per-iteration, per-worker durations -> TRACE.h5 for "
        "--stragglers trace:TRACE.h5"))


def add_benches(sub) -> None:
    bp = sub.add_parser("bench", help="benchmarks: " + ", ".join(BENCHES))
    bsub = bp.add_subparsers(dest="bench_command", required=True, parser_class=Parser)
    for name, text in BENCHES.items():
        b = bsub.add_parser(name, help=text)
        b.add_argument("--json", action="store_true", help="print JSON")
        b.add_argument("--quick", action="store_true", help="a smaller, faster version")
        for flag, kw in BENCH_ARGS.get(name, []):
            b.add_argument(flag, **kw)


def add_calibrate(sub) -> None:
    ca = sub.add_parser("calibrate", help="measure this machine's cost model with MPI and "
                        "write a profile: mpiexec -n N+1 python -m mpi4py -m mpicode "
                        "calibrate --out PROFILE.toml")
    ca.add_argument("--out", default="profile.toml", metavar="PROFILE.toml",
                    help="profile to write (default: profile.toml)")
    ca.add_argument("--force", action="store_true", help="overwrite an existing --out")
    ca.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    ca.add_argument("--quiet", action="store_true", help="do not print the profile")


def _data(args) -> int:
    """``mpicode data synth | import | bundled``."""
    if args.data_command == "synth":
        from mpicode.io import datasets as data  # lazy: after stop handlers
        if args.samples < 1 or args.features < 1:
            raise UsageError("--samples and --features must be >= 1")
        memory.check(memory.data_bytes(args.samples * 1.2, args.features),
                     f"a {args.samples} x {args.features} dataset")
        data.write_dataset(data.synthetic(args.samples, args.features, args.seed), args.out,
                           force=args.force)
        print(f"wrote {args.out}: {args.samples} x {args.features} (+ test rows)")
        return 0
    if args.data_command == "import":
        from mpicode.io.dataimport import run_import  # lazy: after stop handlers
        return run_import(args)
    from mpicode.io.dataimport import build_bundled, print_bundled  # lazy: after stop handlers
    print_bundled(args.out_dir, build_bundled(args.out_dir, force=args.force, seed=args.seed))
    return 0


def dispatch(args) -> int:
    if args.command in ("train", "simulate"):
        faults.check()  # a malformed MPICODE_FAULT (tests only) is one line, before the run
    if args.command == "train":
        from mpicode.mpi import launch as train  # lazy: importing mpi4py initialises MPI
        return train.run(resolve(args))
    if args.command == "simulate":
        from mpicode import simulator  # lazy: per command
        return simulator.simulate(resolve(args))
    if args.command == "report":
        from mpicode.analysis import report  # lazy: per command
        return report.main(args)
    if args.command == "sweep":
        from mpicode.analysis import sweep  # lazy: per command
        return sweep.main(args)
    if args.command == "data":
        return _data(args)
    if args.command == "traces":
        from mpicode.io.traces import run_import as import_trace  # lazy: per command
        return import_trace(args)
    if args.command == "bench":
        import importlib
        import inspect
        mod = importlib.import_module(f"mpicode.bench.{args.bench_command}")
        params = inspect.signature(mod.run).parameters
        given = {"as_json": args.json, **vars(args)}
        mod.run(**{k: v for k, v in given.items() if k in params})
        if args.bench_command == "comm" and not args.no_e2e:
            from mpicode.bench import comm_e2e  # lazy: per command
            comm_e2e.run(as_json=args.json, quick=args.quick)
        return 0
    if args.command == "config" and args.config_command == "show":
        print(show(resolve(args)))
        return 0
    if args.command == "config" and args.config_command == "reference":
        return _write_reference(args.write)
    if args.command == "calibrate":
        from mpicode.mpi import calibrate  # lazy: importing mpi4py initialises MPI
        return calibrate.main(args)
    if args.command in ("schemes", "plugins"):
        kinds = ("scheme", "scheduler") if args.command == "schemes" else tuple(registry.KINDS)
        print(registry.describe(as_json=args.json, kinds=kinds))
        return 0
    if args.command == "warmup":
        from mpicode.numerics import kernels  # lazy: numba (~1 s)
        kernels.warmup()
        print("numba kernels compiled and cached")
        return 0
    raise UsageError(f"unknown command {args.command}")


def _write_reference(path: str | None) -> int:
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


def main(argv=None) -> None:
    # (train's BadInput is a SystemExit raised after MPI was finalized: it passes through)
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] in (["train"], ["simulate"]):
        try:
            _stop_handlers_first()
        except KeyboardInterrupt:  # SIGINT before the handlers were in: the same clean stop
            _stop_handlers_first(pending=signal.SIGINT)
    if not args:  # no command: the usage, as a usage error
        build_parser().print_usage(sys.stderr)
        print("mpicode: error: a command is required (mpicode --help lists them)",
              file=sys.stderr)
        sys.exit(2)
    try:
        code = dispatch(parse(args))
        sys.stdout.flush()
    except UsageError as e:
        _usage_exit(str(e))
    except WriteError as e:  # a full disk while writing an output: nothing half written
        print(f"mpicode: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        print("mpicode: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `mpicode config show | head -1`: the reader left, no traceback
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    sys.exit(code)


def parse(args: list[str]) -> argparse.Namespace:
    """The parsed command line. Plugins (entry points) are loaded only when needed: for
    ``--help`` and ``config show`` (they list every option), or when a flag is unknown to
    the built-ins (``--toy-copies``); a name only a plugin knows loads them in
    :func:`mpicode.config.resolve`."""
    if any(a in ("-h", "--help") for a in args) or args[:2] == ["config", "show"]:
        registry.load_plugins()
    try:
        return build_parser().parse_args(args)
    except UsageError:
        if not registry.load_plugins():
            raise
    return build_parser().parse_args(args)


def _stop_handlers_first(pending: int | None = None) -> None:
    """train/simulate: from now on SIGTERM/SIGINT/SIGUSR1 are a clean stop (exit 3), even
    while numpy is still being imported: a bare handler records the signal until the run
    loop's own (mpicode.engine.loop.install_stop_handlers) takes over."""
    early: list[int] = [] if pending is None else [pending]
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(s, lambda signum, frame: early.append(signum))
    install_stop_handlers()
    if early and STOP["signal"] is None:
        STOP["signal"] = early[-1]


def launcher_rank() -> int:
    """This process's rank as the MPI launcher told it (0 when not launched by one): known
    before MPI is initialised, so a usage error needs no MPI at all."""
    import os
    for var in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _usage_exit(message: str) -> None:
    """One line, exit 2. Under MPI every rank gets here with the same message (the
    argument parsing is identical on every rank): rank 0 prints, all finalize."""
    rank = launcher_rank()
    if "mpi4py.MPI" in sys.modules:
        from mpicode import mpi as runtime  # lazy: only when MPI is up already
        rank = runtime.world().rank
        runtime.finalize()
    if rank == 0:
        print(f"mpicode: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
