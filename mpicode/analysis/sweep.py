"""``mpicode sweep FILE``: run a sweep file locally, one cell after another.

::

    python jobs/make_sweep.py --schemes uncoded,two-stage --seeds 0-4 > jobs/sweep.txt
    mpicode sweep jobs/sweep.txt --np 5 --config jobs/configs/bimodal-compare.toml
    mpicode report runs/sweep_sweep/*.h5 --group-by scheme,stragglers

The file is the one ``jobs/sweep.sbatch`` reads on SLURM: one line of ``mpicode train``
options per cell (comments and blank lines skipped; cell numbers 0-based, as array task ids).
Each cell runs as ``mpiexec -n NP python -m mpi4py -m mpicode train [--config C] LINE
$MPICODE_TRAIN_ARGS --out DIR/cell_NNN_<values>.h5 --quiet`` (the file name and the extra
options of ``sweep.sbatch``), under ``MPIEXEC_TIMEOUT`` (default 3600 s per cell) and a
subprocess timeout 60 s longer, after one ``mpicode warmup`` (numba cache). A cell
whose output exists with status ``complete`` is skipped; one with a ``.part`` file (or an
unfinished output) that holds a checkpoint is resumed (``--resume``); one without a
checkpoint is run again from the start (``--force``); one whose file a live process still
writes (another sweep) is left alone and counted as failed. A resumed cell continues with the
configuration stored in its file, with the line's options on top. Each cell's output goes to
``DIR/cell_NNN_<values>.log``. Exit code 1 if a cell failed, 2 for a bad sweep file.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import h5py

from mpicode import launcher
from mpicode.errors import UsageError
from mpicode.io import safefile


def read_cells(path: str) -> list[str]:
    """The cell lines of a sweep file (comments and blank lines skipped)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read sweep file {path}: "
                         f"{getattr(e, 'strerror', None) or e.__class__.__name__}") from None
    cells = [ln.strip() for ln in text.splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    if not cells:
        raise UsageError(f"sweep file {path} has no cells")
    for i, c in enumerate(cells):
        try:
            words = shlex.split(c)
        except ValueError as e:
            raise UsageError(f"sweep file {path}, cell {i}: {e}") from None
        if any(w in ("--out", "--resume") or w.startswith(("--out=", "--resume="))
               for w in words):
            raise UsageError(f"sweep file {path}, cell {i}: --out/--resume are set by the "
                             "sweep runner")
    return cells


def slug(line: str) -> str:
    """The option values of a line joined by ``_``, as ``jobs/sweep.sbatch`` names cells."""
    s = re.sub(r"--[A-Za-z0-9-]+[ =]+", "", line)
    s = re.sub(r"[^A-Za-z0-9.=-]+", "_", s)
    return re.sub(r"_+$", "", s)


def out_path(out_dir: Path, index: int, line: str) -> Path:
    return out_dir / f"cell_{index:03d}_{slug(line)}.h5"


def state(out: Path) -> tuple[str, Path | None]:
    """What to do with a cell: ('skip', out), ('resume', file with a checkpoint),
    ('rerun', file without one), ('busy', file a live run writes) or ('new', None)."""
    part = Path(str(out) + ".part")
    for f in (out, part):
        if not f.exists():
            continue
        if safefile.is_held(str(f)):
            return "busy", f
        try:
            with h5py.File(f, "r", locking=False) as h:
                status = str(h.attrs.get("status", ""))
                has_ckpt = "checkpoint" in h
        except OSError:
            return "rerun", f
        if f == out and status == "complete":
            return "skip", f
        return ("resume" if has_ckpt else "rerun"), f
    return "new", None


def mpiexec() -> str:
    """The launcher every cell uses (:func:`mpicode.launcher.mpiexec_path`)."""
    return launcher.mpiexec_path()


def command(np_: int, line: str, out: Path, config: str | None, action: str,
            found: Path | None) -> list[str]:
    cmd = [*launcher.mpiexec_argv(np_), *launcher.python_m("mpicode", "train")]
    if config:
        cmd += ["--config", config]
    cmd += shlex.split(line) + shlex.split(os.environ.get("MPICODE_TRAIN_ARGS", ""))
    if action == "resume":
        cmd += ["--resume", str(found)]
    else:
        cmd += ["--out", str(out)] + (["--force"] if action == "rerun" else [])
    return cmd + ["--quiet"]


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no output"


def run_cell(cmd: list[str], log: Path, timeout: int) -> tuple[int, str]:
    """(exit code, one-line reason) of one cell; its output goes to ``log``."""
    env = launcher.launch_env(timeout=timeout)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60, env=env)
    except subprocess.TimeoutExpired as e:
        log.write_text(f"$ {shlex.join(cmd)}\n{e.stdout or ''}{e.stderr or ''}")
        return 124, f"timed out after {timeout + 60} s"
    except OSError as e:
        return 127, f"cannot start {cmd[0]}: {e.strerror}"
    log.write_text(f"$ {shlex.join(cmd)}\n{p.stdout}{p.stderr}")
    return p.returncode, "" if p.returncode == 0 else _last_line(p.stderr or p.stdout)


def warmup(timeout: int) -> None:
    """Compile the numba kernels once (as ``sweep.sbatch`` does), so that no cell's timeout
    pays for it."""
    print("sweep: mpicode warmup (numba kernels into the on-disk cache)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "mpicode", "warmup"], capture_output=True,
                       timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        print(f"sweep: warmup did not finish in {timeout} s; the cells compile themselves")


def _timeout() -> int:
    text = os.environ.get("MPIEXEC_TIMEOUT", "3600")
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"MPIEXEC_TIMEOUT={text!r}: expected a positive number of seconds")
    return int(text)


def _progress(i: int, n: int, name: str, what: str) -> None:
    print(f"[{i + 1}/{n}] {name}: {what}", flush=True)


def _how(action: str, found: Path | None, dry: bool) -> str:
    if action == "resume":
        return f"{'would resume' if dry else 'resumed'} from {found.name}"
    if action == "rerun":
        return f"{'would run' if dry else 'ran'} again ({found.name} has no checkpoint to resume)"
    return "would run" if dry else "ran"


def one_cell(args, i: int, line: str, out_dir: Path, timeout: int) -> str:
    """Run (or skip, or describe) cell ``i``; its progress line; 'ran', 'resumed',
    'skipped', 'failed' or 'dry'."""
    n = args.n_cells
    out = out_path(out_dir, i, line)
    action, found = state(out)
    if action == "skip":
        _progress(i, n, out.name, "skipped (complete)")
        return "skipped"
    if action == "busy":  # another sweep or run writes it: not ours to touch
        _progress(i, n, out.name, f"FAILED: not run, a live process is writing {found.name}")
        return "failed"
    cmd = command(args.np, line, out, args.config, action, found)
    if args.dry_run:
        _progress(i, n, out.name, f"{_how(action, found, True)}: {shlex.join(cmd)}")
        return "dry"
    t0 = time.monotonic()
    log = out.with_suffix(".log")
    code, why = run_cell(cmd, log, timeout)
    took = time.monotonic() - t0
    if code == 0:
        _progress(i, n, out.name, f"{_how(action, found, False)}: ok in {took:.1f} s")
        return "resumed" if action == "resume" else "ran"
    done = state(out)[0] == "skip"  # e.g. killed by the timeout while shutting down
    _progress(i, n, out.name, f"{_how(action, found, False)}: FAILED (exit {code}) in "
              f"{took:.1f} s: {why} (log: {log})"
              + ("; its output is complete, a next sweep skips it" if done else ""))
    return "failed"


def main(args) -> int:
    """The ``sweep`` command: every cell in turn; a summary; 1 if a cell failed."""
    cells = read_cells(args.file)
    if args.np < 2:
        raise UsageError(f"--np {args.np}: need at least 2 ranks (1 coordinator + 1 worker)")
    if args.config and not Path(args.config).is_file():
        raise UsageError(f"--config {args.config}: no such file")
    out_dir = Path(args.out_dir or f"runs/sweep_{Path(args.file).stem}")
    timeout = _timeout()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir {out_dir}: exists and is not a directory")
    if not args.dry_run:
        out_dir.mkdir(parents=True, exist_ok=True)
    args.n_cells = len(cells)
    t_all = time.monotonic()
    if not args.dry_run:
        warmup(timeout)
    results = [one_cell(args, i, line, out_dir, timeout) for i, line in enumerate(cells)]
    count = {k: results.count(k) for k in ("ran", "resumed", "skipped", "failed", "dry")}
    if args.dry_run:
        print(f"sweep: {len(cells)} cells, dry run: {count['skipped']} complete, "
              f"{count['dry']} to run, into {out_dir}/")
        return 0
    failed = [i for i, r in enumerate(results) if r == "failed"]
    which = f" (cells {','.join(map(str, failed))})" if failed else ""
    print(f"sweep: {len(cells)} cells in {time.monotonic() - t_all:.1f} s: {count['ran']} ran, "
          f"{count['resumed']} resumed, {count['skipped']} skipped (complete), "
          f"{count['failed']} failed{which}; runs in {out_dir}/ "
          f"(mpicode report {out_dir}/*.h5)")
    return 1 if failed else 0
