"""Bad input, end to end: one line on stderr, exit code 2 on every rank, within a bound, no
traceback, and no file changed.

Every ``train`` case runs under ``mpiexec`` (3 ranks unless it needs another size) through a
small wrapper that calls :func:`mpicode.cli.main` exactly as ``python -m mpi4py -m mpicode``
does, and records each rank's own exit code in ``code.<rank>``: ``mpiexec`` only returns the
largest, which would hide a rank that exited 0 (or hung until the launcher killed it).
``test_real_entry_point`` checks a few cases through the real ``-m mpicode`` launch too.
``simulate`` cases run serially and must behave the same.

The requirement (issue): invalid numbers and ranges, s >= N, N not a multiple of s+1 for frc,
rho or beta out of range, unknown names, missing/truncated/corrupt datasets, NaN or inf,
wrong shapes, labels that do not fit the model, TOML syntax errors and unknown keys, output
exists without --force, too few ranks, a trace recorded with a different N.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import PY, ROOT, mpiexec_cmd, mpirun

from mpicode import launcher
from mpicode.io.datasets import Dataset, synthetic, write_dataset

LIMIT = 240  # seconds: a subprocess timeout, generous for a loaded 2-core machine
SMALL = ["--samples", 400, "--features", 5, "--iterations", 2, "--quiet"]
OUT = "runs/x.h5"  # in a directory that does not exist yet: refusing must not create it

pytestmark = pytest.mark.timeout(120)

WRAPPER = """\
import os, sys
from mpicode.cli import main
rank = os.environ.get("PMI_RANK", "x")
if rank in os.environ.get("MPICODE_HIDE_DATA_ON_RANKS", "").split(","):
    import mpicode.io.datasets  # this rank's node does not see the dataset file
    mpicode.io.datasets.resolve_path = lambda spec: None
code = "exception"
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    raise
finally:
    with open(os.path.join(os.environ["MPICODE_CODES"], f"code.{rank}"), "w") as f:
        f.write(str(code))
"""


# ---- files the cases read ----------------------------------------------------------------

def _ds(**kw) -> Dataset:
    ds = synthetic(40, 5, 0)
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _write(tmp: Path, name: str, **kw) -> None:
    write_dataset(_ds(**kw), str(tmp / name))


def _truncated(tmp: Path) -> None:
    _write(tmp, "trunc.h5")
    p = tmp / "trunc.h5"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _corrupt(tmp: Path) -> None:
    (tmp / "corrupt.h5").write_bytes(np.random.default_rng(1).bytes(4096))


def _nan(tmp: Path) -> None:
    ds = _ds()
    ds.X[3, 2] = np.nan
    write_dataset(ds, str(tmp / "nan.h5"))


def _inf(tmp: Path) -> None:
    ds = _ds()
    ds.X[7, 0] = -np.inf
    write_dataset(ds, str(tmp / "inf.h5"))


def _strings(tmp: Path) -> None:
    ds = _ds()
    ds.X = np.array([[b"abc"] * 5] * 40)
    write_dataset(ds, str(tmp / "strings.h5"))


def _multiclass(tmp: Path) -> None:
    write_dataset(synthetic(40, 5, 0, task="multiclass", n_classes=4), str(tmp / "mc.h5"))


def _fractional(tmp: Path) -> None:
    ds = synthetic(40, 5, 0, task="multiclass", n_classes=3)
    ds.y[5] = 1.5
    write_dataset(ds, str(tmp / "frac.h5"))


def _no_x_test(tmp: Path) -> None:
    with h5py.File(tmp / "nox.h5", "w") as f:
        f["X"] = np.zeros((10, 2))
        f["y"] = np.zeros(10)


def _file(name: str, text: str | bytes):
    def make(tmp: Path) -> None:
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return make


def _fifo(name: str):
    def make(tmp: Path) -> None:
        os.mkfifo(tmp / name)
    return make


def _nan_checkpoint(tmp: Path) -> None:
    """A complete simulated run whose checkpoint's model is NaN (a damaged checkpoint)."""
    r = subprocess.run([PY, "-m", "mpicode", "simulate", "--workers", "2", "--samples", "400",
                        "--features", "5", "--iterations", "2", "--checkpoint-every", "1",
                        "--out", str(tmp / "nanck.h5"), "--quiet"], capture_output=True, text=True,
                       timeout=LIMIT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp / "nanck.h5", "a") as f:
        f["checkpoint/w"][...] = np.nan


def _absurd_trace(tmp: Path) -> None:
    from mpicode.io.traces import import_trace
    (tmp / "t.csv").write_text("iteration,worker,duration\n"
                               + "".join(f"{t},{w},1\n" for t in range(4) for w in range(2)))
    import_trace(str(tmp / "t.csv"), str(tmp / "absurd.h5"))
    with h5py.File(tmp / "absurd.h5", "a") as f:  # hand-edited, or from an older version
        f["relative"][2, 1] = 1e12


def _trace(tmp: Path) -> None:
    shutil.copy(RECORDED["trace"], tmp / "trace.h5")


RECORDED: dict[str, Path] = {}


@pytest.fixture(scope="module")
def recorded_trace(tmp_path_factory):
    """A tiny real run with N = 2 workers, 2 iterations: the trace the replay cases read."""
    out = tmp_path_factory.mktemp("rec") / "rec.h5"
    r = mpirun(3, ["train", "--stragglers", "shifted-exp", "--delay-unit", 0.001, "--out", out,
                   *SMALL], timeout=60)
    assert r.returncode == 0, r.stderr
    RECORDED["trace"] = out
    return out


# ---- the battery ------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    args: list
    msg: str                    # distinctive part of the one error line
    n: int = 3                  # MPI ranks; 0 = serial ``mpicode simulate``
    setup: list = field(default_factory=list)  # callables(tmp) creating input files
    out: str = OUT
    trace: bool = False         # needs the recorded trace
    env: dict = field(default_factory=dict)  # extra environment of the run


def S(id, args, msg, **kw):
    # out: an existing directory, see test_simulate_refusal_creates_no_directory
    return Case(id, args, msg, n=0, **{"out": "x.h5", **kw})


CASES = [
    # invalid numbers and ranges
    Case("iterations-not-a-number", ["--iterations", "ten"], "--iterations: invalid value 'ten'"),
    Case("iterations-0", ["--iterations", 0], "--iterations: 0 must be > 0"),
    Case("lr-negative", ["--lr", "-0.5"], "--lr: -0.5 must be > 0"),
    Case("lr-nan", ["--lr", "nan"], "--lr: invalid value 'nan'"),
    Case("partitions-0", ["--partitions", 0], "--partitions: 0 must be > 0"),
    Case("seed-negative", ["--seed", "-1"], "--seed: -1 must be >= 0"),
    # scheme parameters against N
    Case("s>=N-ignore-stragglers", ["--scheme", "ignore-stragglers",
                                    "--stragglers-tolerated", 2],
         "--stragglers-tolerated 2 must be < number of workers 2"),
    Case("s>=N-cyclic", ["--scheme", "cyclic", "--stragglers-tolerated", 3],
         "--stragglers-tolerated 3 must be < number of workers 2"),
    Case("frc-N-not-multiple-of-s+1", ["--scheme", "frc", "--stragglers-tolerated", 1],
         "scheme frc needs N=3 to be a multiple of s+1=2", n=4),
    Case("rho-0", ["--scheme", "two-stage", "--rho", 0], "--rho: 0.0 must be in (0, 1]"),
    Case("rho-1.5", ["--scheme", "two-stage", "--rho", 1.5], "--rho: 1.5 must be in (0, 1]"),
    Case("beta-0.5", ["--scheme", "two-stage", "--beta", 0.5], "--beta: 0.5 must be >= 1"),
    Case("trigger-k>N", ["--scheme", "two-stage", "--trigger-k", 3],
         "--trigger-k 3 must be <= number of workers 2"),
    Case("partitions<N", ["--partitions", 1], "--partitions 1 must be >= number of workers 2"),
    Case("partitions>rows", ["--partitions", 402],
         "--partitions 402 exceeds the 400 training rows"),
    Case("placement-replicated-0", ["--placement", "replicated:0"],
         "--placement: 'replicated:0' must be 'shared' or 'replicated:R' with R >= 1"),
    # unknown names
    Case("unknown-scheme", ["--scheme", "nonsense"], "--scheme: unknown value 'nonsense'"),
    Case("unknown-scheduler", ["--channel", "rayleigh", "--scheduler", "edf"],
         "--scheduler: unknown value 'edf'"),
    Case("unknown-channel", ["--channel", "wifi"], "--channel: unknown value 'wifi'"),
    Case("unknown-model", ["--model", "svm"], "--model: unknown value 'svm'"),
    Case("unknown-straggler-model", ["--stragglers", "slow"],
         "--stragglers: 'slow' unknown straggler model"),
    Case("unknown-flag", ["--bogus-flag", 1], "unrecognized arguments: --bogus-flag"),
    Case("channel-trace-missing", ["--channel", "trace", "--channel-trace", "{tmp}/rates.csv"],
         "channel trace not found: {tmp}/rates.csv"),
    # datasets
    Case("dataset-missing", ["--dataset", "{tmp}/no/such.h5"], "dataset not found: {tmp}/no/such"),
    Case("dataset-truncated", ["--dataset", "{tmp}/trunc.h5"],
         "dataset {tmp}/trunc.h5: not a readable HDF5 file", setup=[_truncated]),
    Case("dataset-corrupt", ["--dataset", "{tmp}/corrupt.h5"],
         "dataset {tmp}/corrupt.h5: not a readable HDF5 file", setup=[_corrupt]),
    Case("dataset-nan", ["--dataset", "{tmp}/nan.h5"],
         "dataset {tmp}/nan.h5: X[3, 2] is NaN", setup=[_nan]),
    Case("dataset-inf", ["--dataset", "{tmp}/inf.h5"],
         "dataset {tmp}/inf.h5: X[7, 0] is -inf", setup=[_inf]),
    Case("dataset-y-length", ["--dataset", "{tmp}/ylen.h5"],
         "dataset {tmp}/ylen.h5: y has 39 rows, X has 40",
         setup=[lambda t: _write(t, "ylen.h5", y=np.zeros(39))]),
    Case("dataset-test-columns", ["--dataset", "{tmp}/cols.h5"],
         "dataset {tmp}/cols.h5: X_test has 4 columns, X has 5",
         setup=[lambda t: _write(t, "cols.h5", X_test=np.zeros((8, 4)))]),
    Case("dataset-1d-X", ["--dataset", "{tmp}/flat.h5"],
         "dataset {tmp}/flat.h5: X must be 2-D (rows x features), has shape (40,)",
         setup=[lambda t: _write(t, "flat.h5", X=np.zeros(40))]),
    Case("dataset-strings", ["--dataset", "{tmp}/strings.h5"],
         "dataset {tmp}/strings.h5: X has non-numeric dtype", setup=[_strings]),
    Case("labels-0..3-logistic", ["--dataset", "{tmp}/mc.h5", "--model", "logistic"],
         "labels must be 0/1 for model logistic", setup=[_multiclass]),
    Case("labels-fractional-softmax", ["--dataset", "{tmp}/frac.h5", "--model", "softmax"],
         "y[5] = 1.5: labels must be integers 0..2", setup=[_fractional]),
    # configuration files
    Case("config-missing", ["--config", "{tmp}/nope.toml"], "config file not found: {tmp}/nope"),
    Case("toml-syntax", ["--config", "{tmp}/c.toml"], "config file {tmp}/c.toml: TOML syntax error",
         setup=[_file("c.toml", "iterations = = 3\n")]),
    Case("toml-unknown-key", ["--config", "{tmp}/c.toml"],
         "config file {tmp}/c.toml: unknown key 'iteratoins'",
         setup=[_file("c.toml", "[run]\niteratoins = 3\n")]),
    Case("toml-wrong-type", ["--config", "{tmp}/c.toml"],
         "config file {tmp}/c.toml: --iterations: invalid value 'three'",
         setup=[_file("c.toml", "iterations = \"three\"\n")]),
    # output
    Case("output-exists", [], "output exists: {tmp}/keep.h5 (use --force to overwrite)",
         out="{tmp}/keep.h5", setup=[_file("keep.h5", b"precious bytes")]),
    Case("output-parent-is-a-file", [], "cannot create output directory {tmp}/afile",
         out="{tmp}/afile/x.h5", setup=[_file("afile", "a file, not a directory")]),
    # ranks
    Case("too-few-ranks", [], "too few ranks: need at least 2", n=1),
    # straggler traces
    Case("trace-different-N", ["--stragglers", "trace:{tmp}/trace.h5"],
         "trace {tmp}/trace.h5 was recorded with N=2 workers; this run has N=4",
         n=5, setup=[_trace], trace=True),
    Case("trace-too-short", ["--stragglers", "trace:{tmp}/trace.h5", "--iterations", 5],
         "trace {tmp}/trace.h5 holds 2 iterations; this run needs 5", setup=[_trace],
         trace=True),
    Case("trace-not-a-run", ["--stragglers", "trace:{tmp}/d.h5"],
         "trace {tmp}/d.h5: not an mpicode run", setup=[lambda t: _write(t, "d.h5")]),
    # resuming
    Case("resume-missing", ["--resume", "{tmp}/gone.h5"], "--resume {tmp}/gone.h5: not a"),
    Case("resume-not-a-run", ["--resume", "{tmp}/d.h5"],
         "--resume {tmp}/d.h5: not a readable mpicode run", setup=[lambda t: _write(t, "d.h5")]),
    # the serial twin: ``mpicode simulate`` refuses the same input the same way
    S("sim-frc-N-not-multiple-of-s+1",
      ["--workers", 3, "--scheme", "frc", "--stragglers-tolerated", 1],
      "scheme frc needs N=3 to be a multiple of s+1=2"),
    S("sim-s>=N-cyclic", ["--workers", 2, "--scheme", "cyclic", "--stragglers-tolerated", 2],
      "--stragglers-tolerated 2 must be < number of workers 2"),
    S("sim-rho-1.5", ["--scheme", "two-stage", "--rho", 1.5], "--rho: 1.5 must be in (0, 1]"),
    S("sim-workers-0", ["--workers", 0], "--workers: 0 must be > 0"),
    S("sim-dataset-nan", ["--dataset", "{tmp}/nan.h5"], "dataset {tmp}/nan.h5: X[3, 2] is NaN",
      setup=[_nan]),
    S("sim-labels-logistic", ["--dataset", "{tmp}/mc.h5"],
      "labels must be 0/1 for model logistic", setup=[_multiclass]),
    S("sim-partitions>rows", ["--workers", 2, "--partitions", 402],
      "--partitions 402 exceeds the 400 training rows"),
    S("sim-trigger-k>N", ["--workers", 2, "--scheme", "two-stage", "--trigger-k", 3],
      "--trigger-k 3 must be <= number of workers 2"),
    S("sim-output-exists", [], "output exists: {tmp}/keep.h5", out="{tmp}/keep.h5",
      setup=[_file("keep.h5", b"precious bytes")]),
    S("sim-trace-different-N", ["--workers", 4, "--stragglers", "trace:{tmp}/trace.h5"],
      "trace {tmp}/trace.h5 was recorded with N=2 workers; this run has N=4",
      setup=[_trace], trace=True),
    S("sim-trace-not-a-run", ["--workers", 2, "--stragglers", "trace:{tmp}/d.h5"],
      "trace {tmp}/d.h5: not an mpicode run", setup=[lambda t: _write(t, "d.h5")]),
    S("sim-samples-float", ["--samples", "4e2"], "--samples: invalid value '4e2'"),
    S("sim-placement-replicated>N", ["--workers", 2, "--scheme", "two-stage", "--placement",
                                     "replicated:3"],
      "--placement replicated:3: R must be <= number of workers 2"),
    S("sim-dataset-missing-arrays", ["--dataset", "{tmp}/nox.h5"],
      "dataset {tmp}/nox.h5: missing X_test, y_test", setup=[_no_x_test]),
    S("sim-output-is-a-directory", ["--force"], "output is a directory: {tmp}/adir",
      out="{tmp}/adir", setup=[_file("adir/keep", "x")]),
    S("sim-trace-missing", ["--workers", 2, "--stragglers", "trace:{tmp}/gone.h5"],
      "trace {tmp}/gone.h5: file not found"),
    S("sim-toml-unknown-key", ["--config", "{tmp}/c.toml"], "unknown key 'nope'",
      setup=[_file("c.toml", "nope = 1\n")]),
    # issue 27: input files that are not regular files (a FIFO is never opened: no hang)
    Case("config-fifo", ["--config", "{tmp}/c.fifo"],
         "config file {tmp}/c.fifo: is a FIFO (named pipe), not a file",
         setup=[_fifo("c.fifo")]),
    Case("config-dev-zero", ["--config", "/dev/zero"],
         "config file /dev/zero: is a character device, not a file"),
    Case("dataset-fifo", ["--dataset", "{tmp}/d.fifo"],
         "--dataset: '{tmp}/d.fifo' is a FIFO (named pipe), not a dataset file",
         setup=[_fifo("d.fifo")]),
    S("sim-dataset-dev-urandom-compute-none",
      ["--workers", 2, "--compute", "none", "--dataset", "/dev/urandom"],
      "--dataset: '/dev/urandom' is a character device, not a dataset file"),
    S("sim-config-dev-zero", ["--config", "/dev/zero"],
      "config file /dev/zero: is a character device, not a file"),
    S("sim-profile-fifo", ["--profile", "{tmp}/p.fifo"],
      "profile {tmp}/p.fifo: is a FIFO (named pipe), not a file", setup=[_fifo("p.fifo")]),
    S("sim-trace-fifo", ["--workers", 2, "--stragglers", "trace:{tmp}/t.fifo"],
      "trace {tmp}/t.fifo: not a file", setup=[_fifo("t.fifo")]),
    # issue 27: traces whose durations would stall a replay
    S("sim-trace-absurd-durations", ["--workers", 2, "--stragglers", "trace:{tmp}/absurd.h5"],
      "trace {tmp}/absurd.h5: 1 durations more than 10000 x the median or not finite: "
      "iteration 2 worker 1", setup=[_absurd_trace]),
    # issue 27: fault injection is for tests only; malformed is one line
    S("sim-fault-malformed", [], "MPICODE_FAULT 'kill:soon': expected one of",
      env={"MPICODE_TEST_FAULTS": "1", "MPICODE_FAULT": "kill:soon"}),
    Case("fault-malformed", [], "MPICODE_FAULT 'pause:nowhere:1': expected one of",
         env={"MPICODE_TEST_FAULTS": "1", "MPICODE_FAULT": "pause:nowhere:1"}),
    # issue 27: output names the file system cannot hold with .part
    S("sim-out-name-too-long", [], "output name too long", out="r" * 252 + ".h5"),
    Case("out-name-too-long", [], "output name too long", out="{tmp}/" + "r" * 252 + ".h5"),
    # issue 27: a checkpoint with NaN weights is refused, the file unchanged
    S("sim-resume-nan-checkpoint", ["--resume", "{tmp}/nanck.h5"],
      "--resume {tmp}/nanck.h5: the checkpoint's model w has", out="{tmp}/nanck.h5",
      setup=[_nan_checkpoint]),
]


# ---- checks -----------------------------------------------------------------------------

def snapshot(root: Path) -> dict:
    """Every path under ``root``: kind, size, mtime and, for files, the bytes; and the mtime
    of ``root`` itself (a file created and removed again changes it)."""
    snap = {".": ("dir", root.stat().st_mtime_ns)}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = str(p.relative_to(root))
        if not (p.is_dir() or p.is_file()):  # a FIFO: never read (it would block)
            snap[rel] = ("special", st.st_mode, st.st_mtime_ns)
            continue
        snap[rel] = ("dir", st.st_mtime_ns) if p.is_dir() else (
            "file", st.st_size, st.st_mtime_ns, p.read_bytes())
    return snap


def _fmt(x, tmp: Path) -> str:
    return str(x).replace("{tmp}", str(tmp))


def check_refused(r: subprocess.CompletedProcess, msg: str) -> str:
    """Exit 2, exactly one non-empty stderr line ``mpicode: error: ...msg...``, no stdout,
    no traceback. Returns the line."""
    text = r.stdout + r.stderr
    assert "Traceback" not in text, text
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("mpicode: error: "), line
    assert msg in line, (msg, line)
    assert r.stdout.strip() == "", r.stdout
    assert r.returncode == 2, (r.returncode, line)
    return line


def launch(n: int, args: list, codes: Path, cwd: Path, env: dict | None = None
           ) -> subprocess.CompletedProcess:
    """``mpiexec -n n python -m mpi4py WRAPPER ARGS``: the ``-m mpicode`` launch, plus each
    rank's exit code written to ``codes/code.<rank>``."""
    codes.mkdir(exist_ok=True)
    wrapper = codes / "wrapper.py"
    wrapper.write_text(WRAPPER)
    env = launcher.launch_env(timeout=LIMIT, MPICODE_CODES=str(codes), **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [*mpiexec_cmd(n), PY, "-m", "mpi4py", str(wrapper), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT, cwd=cwd, env=env)


def run_case(case: Case, tmp_path: Path) -> tuple[subprocess.CompletedProcess, str]:
    work = tmp_path / "work"
    work.mkdir()
    for make in case.setup:
        make(work)
    out = _fmt(case.out, work) if "{tmp}" in case.out else str(work / case.out)
    args = [_fmt(a, work) for a in case.args]
    command = "simulate" if case.n == 0 else "train"
    argv = [command, "--out", out, *SMALL, *args]
    before = snapshot(work)
    if case.n == 0:
        r = subprocess.run([PY, "-m", "mpicode", *map(str, argv)], capture_output=True,
                           text=True, timeout=LIMIT, cwd=work,
                           env=dict(os.environ, PYTHONPATH=str(ROOT), **case.env))
    else:
        codes = tmp_path / "codes"
        r = launch(case.n, argv, codes, cwd=work, env=case.env)
        got = {p.name: p.read_text() for p in codes.glob("code.*")}
        assert got == {f"code.{i}": "2" for i in range(case.n)}, (got, r.stderr)
    line = check_refused(r, _fmt(case.msg, work))
    assert snapshot(work) == before, "a refused run changed files"
    assert not list(work.rglob("*.part"))
    return r, line


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, request):
    if case.trace:
        request.getfixturevalue("recorded_trace")
    run_case(case, tmp_path)


# ``mpicode simulate`` checks the output last (check_output may create its directory) and
# turns the uplink's errors into usage errors (regression tests of two fixed gaps).
SIM_GAPS = [
    S("sim-dataset-nan-new-dir", ["--dataset", "{tmp}/nan.h5"],
      "dataset {tmp}/nan.h5: X[3, 2] is NaN", setup=[_nan], out=OUT),
    S("sim-channel-trace-missing", ["--workers", 2, "--channel", "trace", "--channel-trace",
                                    "{tmp}/rates.csv"],
      "channel trace not found: {tmp}/rates.csv"),
]


@pytest.mark.parametrize("case", SIM_GAPS, ids=[c.id for c in SIM_GAPS])
def test_simulate_checks_output_last_and_uplink(case, tmp_path):
    run_case(case, tmp_path)


def test_a_worker_that_cannot_load_stops_every_rank(tmp_path):
    """Rank 0 loads the dataset, the others load it after rank 0's verdict; a rank whose
    node does not see the file (simulated on rank 2) must not leave the others hanging in
    the start-up barrier: every rank exits 2, the failing rank prints the one line."""
    work = tmp_path / "work"
    work.mkdir()
    _write(work, "d.h5")
    before = snapshot(work)
    codes = tmp_path / "codes"
    r = launch(4, ["train", "--out", work / OUT, *SMALL, "--dataset", work / "d.h5"], codes,
               cwd=work, env={"MPICODE_HIDE_DATA_ON_RANKS": "2,3"})
    got = {p.name: p.read_text() for p in codes.glob("code.*")}
    assert got == {f"code.{i}": "2" for i in range(4)}, (got, r.stderr)
    check_refused(r, f"rank 2: dataset not found: {work / 'd.h5'}")
    assert snapshot(work) == before


def test_battery_is_big_enough():
    assert len(CASES) >= 76
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("n,args,msg", [
    (1, [], "too few ranks"),
    (3, ["--dataset", "no/such/file.h5"], "dataset not found"),
], ids=["too-few-ranks", "dataset-missing"])
def test_real_entry_point(tmp_path, n, args, msg):
    """The same refusals through the real launch: ``python -m mpi4py -m mpicode``."""
    out = tmp_path / "x.h5"
    r = mpirun(n, ["train", "--out", out, *SMALL, *args], timeout=LIMIT)
    check_refused(r, msg)
    assert list(tmp_path.iterdir()) == []


# ---- the loaders' own checks, in process (cheap corner cases of the same refusals) -------

def _fake_run(path: Path, **change) -> str:
    """A minimal run file as the Trace loader reads it (N = 2, K = 8, 3 iterations)."""
    cols = {"iteration": np.repeat(np.arange(3), 2), "worker": np.tile(np.arange(2), 3),
            "n_partitions": np.full(6, 4, np.int32), "delay_s": np.full(6, 0.01)}
    attrs = {"n_workers": 2, "n_done": 3, "n_partitions": 8, "n_tasks": 6}
    for k, v in change.items():
        if k.startswith("attr_"):
            attrs[k[5:]] = v
        else:
            (cols if k in cols else attrs)[k] = v
    with h5py.File(path, "w") as f:
        for k, v in attrs.items():
            if v is not None:
                f.attrs[k] = v
        for k, v in cols.items():
            f[f"tasks/{k}"] = v
    return str(path)


def _trace(path, iterations, **kw):
    """The run-file replay as ``--stragglers trace:PATH`` builds it: io reads, the model
    replays (N = 2, K = 8)."""
    from mpicode.io.replay import read_run_tasks, recorded_model
    from mpicode.models.stragglers import Trace
    tasks = read_run_tasks(str(path), 8)
    recorded, note = recorded_model(tasks, str(path))
    return Trace(2, 8, 0, tasks=tasks, iterations=iterations, recorded=recorded, note=note,
                 **kw)


@pytest.mark.parametrize("change,msg", [
    ({}, None),
    ({"n_workers": "two"}, "not a valid mpicode run (bad /tasks or attributes"),
    ({"n_done": None}, "not an mpicode run (no n_done)"),
    ({"worker": np.array([0, 1, 0, 5, 0, 1])}, "task rows out of range"),
    ({"iteration": np.linspace(0, 2, 6)}, "not a valid mpicode run"),
    ({"delay_s": np.array([0.1, -1, 0, 0, 0, 0])}, "delays must be finite and >= 0"),
    ({"delay_s": np.array([0.1, np.nan, 0, 0, 0, 0])}, "delays must be finite and >= 0"),
    ({"attr_n_partitions": 0}, "not a valid mpicode run (n_workers=2, n_partitions=0"),
    ({"n_tasks": 99}, "n_tasks 99 but /tasks holds 6 rows"),
])
def test_trace_loader_checks(tmp_path, change, msg):
    from mpicode.config import UsageError
    path = _fake_run(tmp_path / "t.h5", **change)
    if msg is None:
        tr = _trace(path, 3, unit=0.01)
        assert tr.delay(1, 0, 0, 4) == pytest.approx(0.01)
        return
    with pytest.raises(UsageError) as e:
        _trace(path, 3, unit=0.01)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_trace_loader_files(tmp_path):
    from mpicode.config import UsageError
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF junk" * 50)
    for path, msg in [(tmp_path, "not a file"), (tmp_path / "junk.h5", "not a readable HDF5"),
                      (tmp_path / "none.h5", "file not found")]:
        with pytest.raises(UsageError, match=msg):
            _trace(path, 1)


@pytest.mark.parametrize("text,msg", [
    (b"scheme = '\xff'\n", "TOML syntax error: not UTF-8 text"),
    (b"iterations = 3\n[run]\niterations = 4\n", "key 'iterations' given twice"),
    (b"lr = true\n", "--lr: invalid value True"),
    (b"iterations = inf\n", "--iterations: invalid value inf"),
    (b"delay_unit = nan\n", "--delay-unit: invalid value nan: must be a finite number"),
    (b"[run.sub]\nx = 1\n", "unknown key 'sub' (in [run])"),
    (b"scheme = 3\n", "--scheme: invalid value 3"),
])
def test_toml_corner_cases(tmp_path, text, msg):
    from mpicode.cli import build_parser
    from mpicode.config import UsageError, resolve
    f = tmp_path / "c.toml"
    f.write_bytes(text)
    with pytest.raises(UsageError) as e:
        resolve(build_parser().parse_args(["train", "--config", str(f)]))
    assert msg in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("make,msg", [
    (lambda ds: setattr(ds, "X", ds.X + 1j), "X has non-numeric dtype complex128"),
    (lambda ds: setattr(ds, "y", ds.y > 0), "y has non-numeric dtype bool"),
    (lambda ds: setattr(ds, "task", "ranking"), "task 'ranking' must be binary"),
    (lambda ds: setattr(ds, "n_classes", "many"), "bad attributes"),
    (lambda ds: (setattr(ds, "X", ds.X[:, :0]), setattr(ds, "X_test", ds.X_test[:, :0])),
     "no features"),
    (lambda ds: setattr(ds, "y_test", ds.y_test[:-1]), "y_test has 7 rows, X_test has 8"),
    (lambda ds: setattr(ds, "y", ds.y[:, None]), "y must be 1-D (one label per row)"),
])
def test_dataset_corner_cases(tmp_path, make, msg):
    from mpicode.config import UsageError
    from mpicode.io.datasets import read_dataset
    ds = _ds()
    make(ds)
    write_dataset(ds, str(tmp_path / "d.h5"))
    with pytest.raises(UsageError) as e:
        read_dataset(tmp_path / "d.h5")
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_float32_overflow_is_refused(tmp_path):
    from mpicode.config import UsageError
    from mpicode.io.datasets import load
    ds = _ds()
    ds.X[2, 1] = 1e300
    write_dataset(ds, str(tmp_path / "big.h5"))
    cfg = type("C", (), {"dataset": str(tmp_path / "big.h5"), "model": "logistic",
                         "dtype": "float32"})()
    with pytest.raises(UsageError, match=r"X\[2, 1\] is inf in float32 \(out of range"):
        load(cfg)
