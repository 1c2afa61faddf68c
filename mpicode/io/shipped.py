"""The two real straggler traces the project ships (``data/traces/``), as trace files.

::

    python -m mpicode.io.shipped              # data/trace-SE.h5, data/trace-AR.h5
    python -m mpicode.io.shipped --data-dir /tmp/d

``make data`` runs this, and the experiments call :func:`ensure` before using the traces as
scenarios, so both build the files the same way (same source, license and description);
existing files are kept. Paths resolve against the repository (the directory holding the
``mpicode`` package), not the current directory, so the experiments find them from anywhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mpicode
from mpicode.errors import UsageError
from mpicode.io.dataimport import import_dataset
from mpicode.io.traces import import_trace

TRACES = ("SE", "AR")
LICENSE = ("Apache-2.0 (data/traces/LICENSE-StragglerAnalysis.txt; "
           "ByteDance-Seed/StragglerAnalysis)")
DESCRIPTION = "see data/traces/README.md"


def repo_root() -> Path:
    return Path(mpicode.__file__).resolve().parent.parent


def data_dir() -> Path:
    return repo_root() / "data"


def resolve(path: str) -> Path:
    """A relative ``data/...`` path against the repository root (absolute paths unchanged)."""
    p = Path(path)
    return p if p.is_absolute() else repo_root() / p


def locate(path: str) -> Path:
    """The trace file ``path`` names (relative: against the repository); one of the shipped
    ``data/trace-NAME.h5`` is imported first if it is missing."""
    p = resolve(path)
    name = p.name[len("trace-"):-len(".h5")] if p.name.startswith("trace-") else ""
    if not p.exists() and p.parent == data_dir() and p.suffix == ".h5" and name in TRACES:
        ensure(name)
    return p


def ensure(name: str, out_dir: Path | None = None) -> Path:
    """``out_dir/trace-NAME.h5`` (default the repository's data/), imported if missing."""
    out = (out_dir or data_dir()) / f"trace-{name}.h5"
    if out.exists():
        return out
    src = data_dir() / "traces" / f"bytedance-{name}.csv"
    lic = data_dir() / "traces" / "LICENSE-StragglerAnalysis.txt"
    if not src.is_file():
        raise UsageError(f"shipped trace {src} not found (the experiments need a source "
                         "checkout of mpicode with data/traces/)")
    try:
        import_trace(str(src), str(out), cols=("iteration", "worker", "compute"),
                     license=LICENSE, license_file=str(lic), description=DESCRIPTION)
    except UsageError:
        if not out.exists():  # another process may have written it meanwhile
            raise
    return out


def ensure_all(out_dir: Path | None = None) -> list[Path]:
    return [ensure(t, out_dir) for t in TRACES]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mpicode.io.shipped",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="where to write (default the repo's data/)")
    a = p.parse_args(argv)
    try:
        for path in ensure_all(Path(a.data_dir) if a.data_dir else None):
            print(f"trace: {path}")
    except UsageError as e:
        print(f"mpicode: error: {e}", file=sys.stderr)
        return 2
    return 0


def build_datasets(data_dir: Path, names=("digits", "breast_cancer")) -> None:
    """The scikit-learn datasets, standardised (as ``mpicode data bundled``); kept if present."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        p = data_dir / f"{name}.h5"
        if not p.exists():
            import_dataset(name, str(p), test_fraction=0.2, standardize=True, seed=0)


if __name__ == "__main__":
    sys.exit(main())
