"""Hand-crafted and corrupted files, and extreme options, end to end: run files given to
``report``, ``--resume`` and ``trace:``; datasets; import files (NPZ, LIBSVM, CSV); TOML;
sizes that do not fit in memory. Each case: exit code 2 (on every rank for ``train``), one
line ``mpicode: error: ...`` on stderr, no traceback, within a subprocess timeout, and an md5
of every file of the work directory unchanged, with no file added.

The run files are made once per module from one tiny real run (``simulate``, 3 iterations,
a checkpoint every iteration), then damaged: zeroed bytes inside (a valid HDF5 superblock,
corrupt object headers or links), ``n_done``/``n_tasks`` of the wrong kind, a ``config``
attribute that is not JSON, a file another process holds open for writing.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import PY, ROOT, mpicode
from test_bad_input import WRAPPER

from mpicode import launcher

LIMIT = 240  # seconds per case (subprocess timeout), generous for a loaded machine
SIM = ["simulate", "--workers", 2, "--iterations", 2, "--samples", 200, "--features", 4,
       "--partition-cost", 1e-3, "--quiet"]
TRAIN = ["train", "--iterations", 2, "--samples", 200, "--features", 4, "--quiet"]

pytestmark = pytest.mark.timeout(600)
RUN: dict[str, Path] = {}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "run.h5"
    r = mpicode([*SIM, "--iterations", 3, "--checkpoint-every", 1, "--out", out])
    assert r.returncode == 0, r.stderr
    RUN["path"] = out
    return out


# ---- makers: each writes one input file into the case's work directory -------------------

def _copy(t: Path, name: str) -> Path:
    shutil.copy(RUN["path"], t / name)
    return t / name


def zeroed(offset: int, n: int = 512):
    def make(t: Path) -> None:
        p = _copy(t, "r.h5")
        b = bytearray(p.read_bytes())
        off = offset if offset >= 0 else len(b) // 2
        b[off:off + n] = bytes(n)
        p.write_bytes(bytes(b))
    return make


def attr(key: str, value):
    def make(t: Path) -> None:
        with h5py.File(_copy(t, "r.h5"), "r+") as f:
            if value is None:
                del f.attrs[key]
            else:
                f.attrs[key] = value
    return make


def delete(path: str):
    def make(t: Path) -> None:
        with h5py.File(_copy(t, "r.h5"), "r+") as f:
            del f[path]
    return make


def raw(name: str, data: bytes):
    def make(t: Path) -> None:
        (t / name).write_bytes(data)
    return make


def truncated_run(t: Path) -> None:
    p = _copy(t, "r.h5")
    p.write_bytes(p.read_bytes()[:3000])


def text(name: str, body: str):
    def make(t: Path) -> None:
        (t / name).write_text(body)
    return make


def npz(name: str, **arrays):
    def make(t: Path) -> None:
        np.savez(t / name, **arrays)
    return make


def npz_header(name: str, shape: tuple, descr: str = "<f8"):
    """An NPZ whose .npy headers claim ``shape`` (no data: the header alone must refuse)."""
    def make(t: Path) -> None:
        with zipfile.ZipFile(t / name, "w") as z:
            for k, s in (("X", shape), ("y", shape[:1])):
                h = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    h, {"descr": descr, "fortran_order": False, "shape": s})
                z.writestr(f"{k}.npy", h.getvalue())
    return make


def npz_truncated(t: Path) -> None:
    np.savez(t / "t.npz", X=np.zeros((50, 3)), y=np.zeros(50))
    b = (t / "t.npz").read_bytes()
    (t / "t.npz").write_bytes(b[:len(b) - 30])


def h5_dataset(name: str, shape=(40, 5), n_classes=None, huge=False):
    """A dataset file; ``huge``: X declared 10^8 x 10^4 (chunked, nothing written: tiny)."""
    def make(t: Path) -> None:
        with h5py.File(t / name, "w") as f:
            if huge:
                f.create_dataset("X", shape=(10 ** 8, 10 ** 4), dtype="f8", chunks=(64, 64))
                f.create_dataset("y", shape=(10 ** 8,), dtype="f8", chunks=(4096,))
            else:
                f["X"] = np.zeros(shape)
                f["y"] = np.zeros(shape[0])
            f["X_test"] = np.zeros((8, 10 ** 4 if huge else shape[1]))
            f["y_test"] = np.zeros(8)
            f.attrs["task"] = "multiclass"
            f.attrs["n_classes"] = n_classes if n_classes is not None else 2
    return make


# ---- the cases ---------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    argv: list           # full command line after ``mpicode``; {t} is the work directory
    msg: str
    setup: list = field(default_factory=list)
    ranks: int = 0       # 0: serial; else mpiexec -n ranks (exit code 2 on every rank)
    run: bool = False    # needs the good run


def R(id, argv, msg, *setup, ranks=0):
    return Case(id, argv, msg, list(setup), ranks, run=True)


def C(id, argv, msg, *setup, ranks=0):
    return Case(id, argv, msg, list(setup), ranks)


RESUME = ["simulate", "--quiet", "--resume", "{t}/r.h5"]
TRACE = [*SIM, "--out", "{t}/new.h5", "--stragglers", "trace:{t}/r.h5"]
CASES = [
    # run files given to report
    R("report-zeroed-superblock-end", ["report", "{t}/r.h5"], "cannot read run", zeroed(2048)),
    R("report-zeroed-links", ["report", "{t}/r.h5"], "cannot read run", zeroed(20000)),
    R("report-n_done-negative", ["report", "{t}/r.h5"], "n_done = -5", attr("n_done", -5)),
    R("report-n_done-fraction", ["report", "{t}/r.h5"], "n_done = 2.5", attr("n_done", 2.5)),
    R("report-n_done-text", ["report", "{t}/r.h5"], "n_done = 'x'", attr("n_done", "x")),
    R("report-n_done-past-rows", ["report", "{t}/r.h5"], "n_done 1000 but /iterations holds 3",
      attr("n_done", 1000)),
    R("report-n_tasks-negative", ["report", "{t}/r.h5"], "n_tasks = -1", attr("n_tasks", -1)),
    R("report-no-iterations", ["report", "{t}/r.h5"], "not an mpicode run (no /iterations",
      delete("iterations")),
    C("report-random-bytes", ["report", "{t}/r.h5"], "cannot read run",
      raw("r.h5", np.random.default_rng(0).bytes(5000))),
    C("report-empty-file", ["report", "{t}/r.h5"], "cannot read run", raw("r.h5", b"")),
    R("report-truncated", ["report", "{t}/r.h5"], "cannot read run", truncated_run),
    C("report-missing", ["report", "{t}/none.h5"], "no such file"),
    # run files given to --resume: refused, the file untouched
    R("resume-zeroed-superblock-end", RESUME, "corrupt file", zeroed(2048)),
    R("resume-zeroed-links", RESUME, "corrupt file", zeroed(20000)),
    R("resume-zeroed-object-header", RESUME, "corrupt file", zeroed(8192)),
    R("resume-config-not-json", RESUME, "not a readable mpicode run",
      attr("config", "{not json")),
    R("resume-config-missing", RESUME, "not a readable mpicode run", attr("config", None)),
    R("resume-n_done-text", RESUME, "not a readable mpicode run", attr("n_done", "x")),
    R("resume-no-checkpoint", RESUME, "has no checkpoint", delete("checkpoint")),
    C("resume-random-bytes", RESUME, "not a readable mpicode run",
      raw("r.h5", np.random.default_rng(1).bytes(5000))),
    R("resume-truncated", RESUME, "not a readable mpicode run", truncated_run),
    R("train-resume-zeroed-links", ["train", "--quiet", "--resume", "{t}/r.h5"],
      "corrupt file", zeroed(20000), ranks=3),
    # run files given as a straggler trace
    C("trace-random-bytes", TRACE, "not a readable HDF5",
      raw("r.h5", np.random.default_rng(2).bytes(5000))),
    R("trace-truncated", TRACE, "trace {t}/r.h5", truncated_run),
    R("trace-n_done-text", TRACE, "not a valid mpicode run", attr("n_done", "x")),
    R("trace-no-tasks", TRACE, "trace {t}/r.h5", delete("tasks")),
    R("trace-n_workers-text", TRACE, "not a valid mpicode run", attr("n_workers", "two")),
    C("trace-is-a-directory", [*SIM, "--out", "{t}/new.h5", "--stragglers", "trace:{t}"],
      "not a file"),
    # datasets
    C("dataset-n_classes-huge", [*SIM, "--out", "{t}/new.h5", "--dataset", "{t}/d.h5",
                                 "--model", "softmax"],
      "model dimension 5000000000", h5_dataset("d.h5", n_classes=10 ** 9)),
    C("dataset-header-huge", [*SIM, "--out", "{t}/new.h5", "--dataset", "{t}/d.h5"],
      "of memory, more than", h5_dataset("d.h5", huge=True)),
    C("train-dataset-header-huge", [*TRAIN, "--out", "{t}/new.h5", "--dataset", "{t}/d.h5"],
      "of memory, more than", h5_dataset("d.h5", huge=True), ranks=3),
    C("dataset-empty-file", [*SIM, "--out", "{t}/new.h5", "--dataset", "{t}/d.h5"],
      "not a readable HDF5 file", raw("d.h5", b"")),
    # import files
    C("npz-object-array", ["data", "import", "{t}/o.npz", "--out", "{t}/o.h5"],
      "holds Python objects", npz("o.npz", X=np.array([[1, "a"]], dtype=object),
                                  y=np.zeros(1))),
    C("npz-not-a-zip", ["data", "import", "{t}/n.npz", "--out", "{t}/o.h5"],
      "not a zip archive", raw("n.npz", b"PK not really a zip" * 20)),
    C("npz-is-npy", ["data", "import", "{t}/n.npz", "--out", "{t}/o.h5", "--format", "npz"],
      "not a zip archive", raw("n.npz", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'}")),
    C("npz-truncated", ["data", "import", "{t}/t.npz", "--out", "{t}/o.h5"],
      "not a readable NPZ file", npz_truncated),
    C("npz-header-huge", ["data", "import", "{t}/h.npz", "--out", "{t}/o.h5"],
      "of memory, more than", npz_header("h.npz", (10 ** 7, 10 ** 5))),
    C("npz-header-object", ["data", "import", "{t}/h.npz", "--out", "{t}/o.h5"],
      "holds Python objects", npz_header("h.npz", (3, 2), descr="|O")),
    C("npz-missing-y", ["data", "import", "{t}/m.npz", "--out", "{t}/o.h5"],
      "missing array(s) y", npz("m.npz", X=np.zeros((3, 2))),),
    C("libsvm-huge-index", ["data", "import", "{t}/b.svm", "--out", "{t}/o.h5"],
      "largest index 99999999999", text("b.svm", "1 1:1 99999999999:2\n0 2:1\n")),
    C("libsvm-bad-entry", ["data", "import", "{t}/b.svm", "--out", "{t}/o.h5"],
      "bad LIBSVM entry", text("b.svm", "1 1:1 oops\n0 2:1\n")),
    C("libsvm-empty", ["data", "import", "{t}/b.svm", "--out", "{t}/o.h5"],
      "no data lines", text("b.svm", "# nothing\n\n")),
    # TOML
    C("toml-binary-garbage", [*SIM, "--out", "{t}/new.h5", "--config", "{t}/c.toml"],
      "TOML syntax error", raw("c.toml", np.random.default_rng(3).bytes(300))),
    C("toml-array-for-number", [*SIM, "--out", "{t}/new.h5", "--config", "{t}/c.toml"],
      "--iterations: invalid value", text("c.toml", "iterations = [1, 2]\n")),
    C("toml-stop-timeout-negative", [*TRAIN, "--out", "{t}/new.h5", "--config", "{t}/c.toml"],
      "--stop-timeout: -1.0 must be > 0", text("c.toml", "stop_timeout = -1\n"), ranks=3),
    # extreme and inconsistent options
    C("workers-10M", [*SIM[:1], "--workers", 10 ** 7, "--out", "{t}/new.h5", "--quiet"],
      "N=10000000 workers", ),
    C("samples-x-features", ["simulate", "--samples", 10 ** 9, "--features", 10 ** 4,
                             "--out", "{t}/new.h5", "--quiet"], "1000000000 x 10000 data"),
    C("train-samples-x-features", ["train", "--samples", 10 ** 9, "--features", 10 ** 4,
                                   "--out", "{t}/new.h5", "--quiet"],
      "1000000000 x 10000 data", ranks=3),
    C("train-partitions-huge", [*TRAIN, "--partitions", 10 ** 10, "--out", "{t}/new.h5"],
      "of memory, more than", ranks=3),
    C("synth-huge", ["data", "synth", "--samples", 10 ** 9, "--features", 10 ** 5,
                     "--out", "{t}/s.h5"], "of memory, more than"),
    C("max-wait-0", [*SIM, "--out", "{t}/new.h5", "--max-wait", 0], "--max-wait: 0.0 must"),
    C("max-wait-nan", [*TRAIN, "--out", "{t}/new.h5", "--max-wait", "nan"],
      "--max-wait: invalid value 'nan'", ranks=3),
    C("stop-timeout-inf", [*TRAIN, "--out", "{t}/new.h5", "--stop-timeout", "inf"],
      "--stop-timeout: invalid value 'inf'", ranks=3),
    C("dead-after-negative", [*SIM, "--out", "{t}/new.h5", "--dead-after", -1],
      "--dead-after: -1 must be >= 0"),
    C("iterations-huge-float", [*SIM, "--out", "{t}/new.h5", "--iterations", "1e30"],
      "--iterations: invalid value '1e30'"),
]


def launch(n: int, argv: list, codes: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``mpiexec -n n python -m mpi4py WRAPPER ARGV``; each rank's code in codes/code.<rank>."""
    codes.mkdir(exist_ok=True)
    (codes / "wrapper.py").write_text(WRAPPER)
    env = launcher.launch_env(timeout=LIMIT - 20, MPICODE_CODES=str(codes))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    from conftest import mpiexec_cmd
    return subprocess.run([*mpiexec_cmd(n), PY, "-m", "mpi4py", str(codes / "wrapper.py"),
                           *argv], capture_output=True, text=True, timeout=LIMIT, cwd=cwd,
                          env=env)


def md5s(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_file(case, tmp_path, request):
    if case.run:
        request.getfixturevalue("good_run")
    work = tmp_path / "work"
    work.mkdir()
    for make in case.setup:
        make(work)
    argv = [str(a).replace("{t}", str(work)) for a in case.argv]
    before = md5s(work)
    if case.ranks:
        codes = tmp_path / "codes"
        r = launch(case.ranks, argv, codes, cwd=work)
        got = {p.name: p.read_text() for p in codes.glob("code.*")}
        assert got == {f"code.{i}": "2" for i in range(case.ranks)}, (got, r.stderr)
    else:
        r = subprocess.run([PY, "-m", "mpicode", *argv], capture_output=True, text=True,
                           timeout=LIMIT, cwd=work, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mpicode: error: "), r.stderr
    assert case.msg.replace("{t}", str(work)) in lines[0], (case.msg, lines[0])
    assert r.returncode == 2, (r.returncode, lines[0])
    assert md5s(work) == before, "a refused command changed or added files"


def test_locked_run_is_not_resumed(tmp_path, good_run):
    """A run another process holds open for writing (HDF5's lock): --resume refuses it."""
    work = tmp_path / "work"
    work.mkdir()
    p = _copy(work, "r.h5")
    holder = subprocess.Popen([PY, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], "
                               "'r+'); print('held', flush=True); time.sleep(120)", str(p)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = md5s(work)
        r = mpicode(["simulate", "--quiet", "--resume", p], timeout=LIMIT)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert "locked by another process" in lines[0] or "in use by a running" in lines[0]
        assert md5s(work) == before
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_budget_estimate_is_pure_and_monotone():
    from mpicode.config import UsageError
    from mpicode.engine import budget
    a = budget.run_bytes(n_workers=10, n_partitions=40, rows=100, cols=5)
    b = budget.run_bytes(n_workers=20, n_partitions=40, rows=100, cols=5)
    c = budget.run_bytes(n_workers=10, n_partitions=40, rows=100, cols=5, ranks_here=3)
    assert a < b and a < c and a == budget.run_bytes(n_workers=10, n_partitions=40, rows=100,
                                                     cols=5)
    budget.check(a, "x", available=a)
    with pytest.raises(UsageError, match="more than the"):
        budget.check(a + 1, "x", available=a)
    assert budget.mem_available("/no/such/meminfo") is None
