"""``mpicode sweep FILE``: run a sweep file locally, one cell after another.

::

    python jobs/make_sweep.py --schemes uncoded,two-stage --seeds 0-4 > jobs/sweep.txt
    mpicode sweep jobs/sweep.txt --np 5 --config jobs/configs/bimodal-compare.toml
    mpicode report runs/sweep_sweep/*.h5 --group-by scheme,stragglers

The file is the one ``jobs/sweep.sbatch`` reads on SLURM: one line of ``mpicode train``
options per cell (comments and blank lines skipped; cell numbers 0-based, as array task ids).
Each cell runs as ``mpiexec -n NP python -m mpi4py -m mpicode train [--config C] LINE
$MPICODE_TRAIN_ARGS --out DIR/cell_NNN_<name=value_...>.h5 --quiet`` (the file name and the extra
options of ``sweep.sbatch``), under ``MPIEXEC_TIMEOUT`` (default 3600 s per cell) and a
subprocess timeout 60 s longer, after one ``mpicode warmup`` (numba cache). A cell
whose output exists with status ``complete`` is skipped; one with a ``.part`` file (or an
unfinished output) that holds a checkpoint is resumed (``--resume``); one without a
checkpoint is run again from the start (``--force``); one whose file a live process still
writes (another sweep) is left alone and counted as failed. A resumed cell continues with the
configuration stored in its file, with the line's options on top. Each cell's output goes to
``DIR/cell_NNN_<name=value_...>.log``. Exit code 1 if a cell failed (a cell whose job exited
non-zero with its run complete in the file is not failed: a next sweep skips it), 2 for a
bad sweep file.
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


SLUG_MAX = 180  # characters of a cell name's option part (the whole name stays < NAME_MAX)


def slug(line: str) -> str:
    """``name=value`` of every option of a line joined by ``_`` (``--scheme uncoded --seed 3``
    -> ``scheme=uncoded_seed=3``), as ``jobs/sweep.sbatch`` names cells: the name says which
    option each value belongs to, the seed included."""
    s = re.sub(r"--([A-Za-z0-9-]+)[ =]+", r"\1=", line.strip())
    s = re.sub(r"[^A-Za-z0-9.=-]+", "_", s)
    return re.sub(r"_+$", "", s)[:SLUG_MAX]


def old_slug(line: str) -> str:
    """The values only (cell names before issue 27): a sweep begun then is continued."""
    s = re.sub(r"--[A-Za-z0-9-]+[ =]+", "", line)
    s = re.sub(r"[^A-Za-z0-9.=-]+", "_", s)
    return re.sub(r"_+$", "", s)


def out_path(out_dir: Path, index: int, line: str) -> Path:
    new = out_dir / f"cell_{index:03d}_{slug(line)}.h5"
    old = out_dir / f"cell_{index:03d}_{old_slug(line)}.h5"
    if not any(os.path.lexists(f"{p}{x}") for p in (new,) for x in ("", ".part")) and \
            any(os.path.lexists(f"{old}{x}") for x in ("", ".part")):
        return old
    return new


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


def _text(out) -> str:
    """A TimeoutExpired's output: bytes even under ``text=True``, or None."""
    if out is None:
        return ""
    return out.decode(errors="replace") if isinstance(out, bytes) else out


class Interrupted(Exception):
    """Ctrl-C during a cell: the cell stopped cleanly (or was killed on a second Ctrl-C)."""


def run_cell(cmd: list[str], log: Path, timeout: int) -> tuple[int, str]:
    """(exit code, one-line reason) of one cell; its output goes to ``log``.

    The cell's ``mpiexec`` runs in a session of its own, so that a Ctrl-C in the terminal
    reaches only the sweep, which relays it to ``mpiexec`` exactly once (MPICH's mpiexec
    force-aborts the job on a second SIGINT, which a terminal's and a relayed one made) and
    waits for the cell's clean stop (a checkpoint, "interrupted"); a second Ctrl-C kills
    it. Either way :class:`Interrupted` follows, after the log is written."""
    import signal  # lazy: only this function relays a signal
    env = launcher.launch_env(timeout=timeout)
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, start_new_session=True)
    except OSError as e:
        return 127, f"cannot start {cmd[0]}: {e.strerror}"
    interrupted = False
    try:
        out, err = p.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        safefile.write_text(log, f"$ {shlex.join(cmd)}\n{_text(out)}{_text(err)}")
        return 124, f"timed out after {timeout + 60} s"
    except KeyboardInterrupt:
        interrupted = True
        print("sweep: Ctrl-C: the cell stops cleanly (its checkpoint); Ctrl-C again kills it",
              file=sys.stderr, flush=True)
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=timeout + 60)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            p.kill()
            out, err = p.communicate()
    safefile.write_text(log, f"$ {shlex.join(cmd)}\n{_text(out)}{_text(err)}")
    if interrupted:
        raise Interrupted(_last_line(err or out))
    return p.returncode, "" if p.returncode == 0 else _last_line(err or out)


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
    if state(out)[0] == "skip":  # e.g. killed by the timeout while shutting down
        # the run is complete in its file (a next sweep skips it): not a failed cell, so
        # this sweep's exit code agrees with the next one's
        _progress(i, n, out.name, f"{_how(action, found, False)}: complete in {took:.1f} s, "
                  f"but the job ended with exit {code}: {why} (log: {log})")
        return "warned"
    _progress(i, n, out.name, f"{_how(action, found, False)}: FAILED (exit {code}) in "
              f"{took:.1f} s: {why} (log: {log})")
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
    results = []
    for i, line in enumerate(cells):
        try:
            results.append(one_cell(args, i, line, out_dir, timeout))
        except Interrupted as e:
            print(f"sweep: interrupted in cell {i} ({e}); run the sweep again to continue: "
                  "complete cells are skipped, an interrupted one resumes from its checkpoint",
                  file=sys.stderr, flush=True)
            return 130
    count = {k: results.count(k) for k in ("ran", "resumed", "skipped", "failed", "dry",
                                            "warned")}
    if args.dry_run:
        print(f"sweep: {len(cells)} cells, dry run: {count['skipped']} complete, "
              f"{count['dry']} to run, into {out_dir}/")
        return 0
    failed = [i for i, r in enumerate(results) if r == "failed"]
    which = f" (cells {','.join(map(str, failed))})" if failed else ""
    warned = (f", {count['warned']} complete but their job exited non-zero (see their logs)"
              if count["warned"] else "")
    print(f"sweep: {len(cells)} cells in {time.monotonic() - t_all:.1f} s: {count['ran']} ran, "
          f"{count['resumed']} resumed, {count['skipped']} skipped (complete), "
          f"{count['failed']} failed{which}{warned}; runs in {out_dir}/ "
          f"(mpicode report {out_dir}/*.h5)")
    return 1 if failed else 0
