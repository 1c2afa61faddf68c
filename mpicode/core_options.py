"""The core option table: every option that belongs to no scheme, scheduler, straggler model
or channel (those declare their own, see :mod:`mpicode.registry`). A leaf of the import
graph, beside :mod:`mpicode.errors` and :mod:`mpicode.options`: the registry checks plugin
options against it and :mod:`mpicode.config` resolves it (command line, TOML, profiles).

The choices of ``--scheme``, ``--scheduler``, ``--channel`` and ``--stragglers`` are the
registered names; the registry fills them in (:func:`mpicode.registry.merged_options`).
"""

from __future__ import annotations

from mpicode.options import (
    Option,
    _auto_or_int,
    _bool,
    _finite_float,
    _is_pos_float,
    _optional_float,
    _optional_int,
    auto_or_positive,
    dataset_file,
    hidden_sizes,
    nonneg,
    optional_positive,
    positive,
    unit_right_open,
)
from mpicode.profile import COST_OPTIONS

FAILURE_MODELS = ("none", "exponential")  # --failure-model (mpicode/models/failures.py)

MODELS = ("logistic", "softmax", "least-squares", "mlp")
OPTIMIZERS = ("gd", "momentum", "nesterov", "adam")

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
    Option("eval_every", _auto_or_int, "auto",
           "rank 0 evaluates train/test loss every E iterations and at the last; auto: E "
           "chosen after the first iterations so evaluation takes at most 5 percent of the "
           "time (the workers report the training loss of every iteration: train_loss)",
           check=auto_or_positive, metavar="E|auto"),
    # --- stragglers (docs/design.md §5) ------------------------------------------------
    Option("stragglers", str, "none",  # help and check: the registry (its names)
           "straggler model: NAME or trace:RUN.h5 (a recorded run) | trace:TRACE.h5 "
           "(mpicode traces import)", group="stragglers"),
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
]

OPTIONS += [
    # --- communication phase (docs/design.md §4) ---------------------------------------
    Option("channel", str, "ideal", "uplink channel model", group="comm"),  # + registry
    Option("scheduler", str, "lyapunov", "uplink scheduler (when --channel is not ideal)",
           group="comm"),  # choices: the registry
    Option("slot_ms", _finite_float, 2.0, "slot length tau_s in ms", check=positive,
           group="comm"),
    Option("link_timing", str, "emulated",
           "when a granted message counts as delivered: at the end of the emulated slot that "
           "carried its last byte (emulated), or when its last chunk really reaches rank 0 "
           "(real: a real, e.g. rate-limited, network decides; the scheduler still grants slot "
           "by slot with the channel's rates). real needs train with --delay-mode sleep; "
           "elsewhere it is emulated (the prediction)", choices=("emulated", "real"),
           group="comm"),
    Option("access", str, "tdma", "one worker per slot (tdma), split among the top m (ofdma), "
           "or several at once, each at its own rate, sharing --bottleneck (wired)",
           choices=("tdma", "ofdma", "wired"), group="comm"),
    Option("bottleneck", _optional_float, None,
           "wired access: bytes/s every worker's uplink shares into rank 0 (default: no shared "
           "limit)", check=optional_positive, group="comm"),
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
    # --- workers that die (docs/design.md §2.7; mpicode/models/failures.py) ------------------
    Option("on_failure", str, "abort",
           "a worker that dies: abort the run (resumable), or continue without it, exactly "
           "(train: needs an MPI with fault tolerance, mpiexec --with-ft ulfm; mpicode info)",
           choices=("abort", "continue"), group="reliability"),
    Option("fail", str, "", "WORKER@SECONDS, WORKER@iITERATION or WORKER@iITERATION+SECONDS: "
           "that worker dies then (simulate, train --delay-mode virtual)", group="reliability",
           metavar="W@T", repeat=True),
    Option("failure_model", str, "none", "worker lifetimes: none, or exponential (mean "
           "--lifetime-mean, seeded by --failure-seed)", choices=FAILURE_MODELS,
           group="reliability"),
    Option("lifetime_mean", _finite_float, 600.0,
           "exponential failure model: mean seconds a worker lives", check=positive,
           group="reliability", metavar="SECONDS"),
    Option("failure_seed", _optional_int, None, "seed of the failure model (default: --seed)",
           group="reliability"),
    Option("detect_s", _finite_float, 0.0, "virtual time: seconds from a worker's death to "
           "rank 0 knowing it (ULFM's detection)", check=nonneg, group="reliability",
           metavar="SECONDS"),
]

OPTIONS += COST_OPTIONS

# options `mpicode train` accepts (so that one command line serves both) but does not list
SIMULATE_ONLY = ("workers", "compute", "measure_partition_cost")
