"""Import datasets into the mpicode HDF5 dataset format.

Sources: the scikit-learn bundled sets ``digits`` (10 classes), ``breast_cancer`` (binary) and
``diabetes`` (regression), when scikit-learn is installed (``pip install 'mpicode[data]'``);
LIBSVM/svmlight text; CSV (label in the last column unless ``--label-column``); NPZ with
arrays ``X`` and ``y``. Rows are shuffled (seeded), split into train/test, and optionally
standardised with the training mean and standard deviation. Malformed input is a
:class:`~mpicode.config.UsageError` whose one-line message names the file and the line or
column.

Command line (wired as ``mpicode data import``; also ``python -m mpicode.io.dataimport``)::

    python -m mpicode.io.dataimport import data.csv --out data/mine.h5 --standardize
    python -m mpicode.io.dataimport bundled --out-dir data      # digits, breast_cancer, diabetes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mpicode.errors import UsageError
from mpicode.io.datasets import MODEL_TASK, Dataset, read_dataset, write_dataset
from mpicode.io.labels import infer_task, mapping_attr, mapping_note
from mpicode.io.textformats import _is_int, _lines, read_csv, read_libsvm

__all__ = ["import_dataset", "build_bundled", "infer_task", "read_csv", "read_libsvm"]
from mpicode.io.npzfile import read_npz  # noqa: F401 - part of this module's interface

SKLEARN_SETS = {"digits": "multiclass", "breast_cancer": "binary", "diabetes": "regression"}
TASKS = ("auto", "binary", "multiclass", "regression")
FORMATS = ("auto", "csv", "libsvm", "npz")


def sklearn_available() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def read_sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn import datasets
    except ImportError:
        raise UsageError(f"source {name!r} needs scikit-learn, which is not installed: "
                         "pip install 'mpicode[data]' (or pip install scikit-learn)") from None
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return np.asarray(X, np.float64), np.asarray(y, np.float64)




def _sniff(path: str) -> str:
    p = Path(path)
    if p.suffix.lower() == ".npz":
        return "npz"
    if p.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    if p.suffix.lower() in (".svm", ".libsvm", ".svmlight"):
        return "libsvm"
    for _, line in _lines(path):
        s = line.split("#", 1)[0].strip()
        if s:
            return "libsvm" if ":" in s.split()[-1] else "csv"
    return "csv"


def import_dataset(source: str, out: str, *, test_fraction: float = 0.2,
                   standardize: bool = False, seed: int = 0, label_column: int | str = -1,
                   fmt: str = "auto", task: str = "auto", force: bool = False,
                   name: str | None = None, notes: list | None = None) -> Dataset:
    """Read ``source``, shuffle, split, standardise, write ``out``; returns the dataset.
    ``notes`` (a list) receives what the user should hear: how labels were recoded, a
    missing ``--standardize``.

    Parameters
    ----------
    source : str
        ``digits``, ``breast_cancer``, ``diabetes`` (scikit-learn) or a CSV/LIBSVM/NPZ path.
    out : str
        HDF5 dataset file to write (refused if it exists, unless ``force``).
    test_fraction : float
        Share of rows held out for testing, in [0, 1).
    standardize : bool
        Scale every feature to zero mean, unit variance with the training statistics
        (constant features are only centred); for regression also subtract the training
        mean of the target (the models have no intercept), recorded as attribute
        ``y_offset``.
    seed : int
        Seed of the shuffle.
    label_column : int or str
        CSV label column: index (negative counts from the end) or header name.
    fmt : {"auto", "csv", "libsvm", "npz"}
    task : {"auto", "binary", "multiclass", "regression"}
    """
    if not 0.0 <= test_fraction < 1.0:
        raise UsageError(f"--test-fraction {test_fraction}: must be in [0, 1)")
    X, y, mapping, task, where = _read_source(source, fmt, label_column, task)
    y, task, n_classes, mapping = infer_task(y, task, where, mapping)
    if notes is not None and mapping_note(mapping, where):
        notes.append(mapping_note(mapping, where))
    if notes is not None and not standardize and X.size and float(np.abs(X).max()) > 100:
        notes.append(f"{where}: features are not standardized (largest |x| "
                     f"{float(np.abs(X).max()):.3g}); gradient descent may diverge: "
                     "consider --standardize")
    n = X.shape[0]
    n_test = int(round(n * test_fraction))
    if n - n_test < 1:
        raise UsageError(f"{where}: {n} rows leave no training rows at --test-fraction "
                         f"{test_fraction}")
    perm = np.random.default_rng([seed, 0x1A9]).permutation(n)
    X, y = X[perm], y[perm]
    Xt, yt, X, y = X[:n_test], y[:n_test], X[n_test:], y[n_test:]
    y_offset = 0.0
    if standardize:
        X, Xt, y, yt, y_offset = _standardize(X, Xt, y, yt, task)
    ds = Dataset(name or Path(source).stem, np.ascontiguousarray(X), y.copy(),
                 np.ascontiguousarray(Xt), yt.copy(), task, n_classes)
    write_dataset(ds, out, force=force, attrs={
        "source": str(source), "seed": int(seed), "test_fraction": float(test_fraction),
        "standardized": bool(standardize), "y_offset": y_offset,
        "label_mapping": mapping_attr(mapping)})
    return ds


def _standardize(X, Xt, y, yt, task):
    """Features scaled with the training mean and std (constant ones only centred); for
    regression the target centred too (the models have no intercept; RMSE keeps the original
    units). Returns (X, Xt, y, yt, y_offset)."""
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    sd[sd == 0] = 1.0
    y_offset = float(y.mean()) if task == "regression" else 0.0
    return (X - mu) / sd, (Xt - mu) / sd, y - y_offset, yt - y_offset, y_offset


def _read_source(source, fmt, label_column, task):
    """(X, y, label mapping or None, task, where) of a scikit-learn name or a file."""
    if source in SKLEARN_SETS and not Path(source).exists():
        X, y = read_sklearn(source)
        return X, y, None, SKLEARN_SETS[source] if task == "auto" else task, \
            f"scikit-learn {source}"
    if not Path(source).is_file():
        raise UsageError(f"source not found: {source} (a file, or one of "
                         f"{', '.join(SKLEARN_SETS)} with scikit-learn installed)")
    kind = _sniff(source) if fmt == "auto" else fmt
    mapping = None
    if kind == "npz":
        X, y = read_npz(source)
    elif kind == "libsvm":
        X, y = read_libsvm(source)
    else:
        X, y, mapping = read_csv(source, label_column)
    return X, y, mapping, task, source


def build_bundled(out_dir: str = "data", *, force: bool = False, seed: int = 0,
                  test_fraction: float = 0.2) -> list[Path]:
    """Write ``digits.h5``, ``breast_cancer.h5``, ``diabetes.h5`` (standardised) into
    ``out_dir`` (for ``make data``); existing files are kept unless ``force``."""
    if not sklearn_available():
        raise UsageError("building the bundled datasets needs scikit-learn, which is not "
                         "installed: pip install 'mpicode[data]' (or pip install scikit-learn)")
    written = []
    for name in SKLEARN_SETS:
        p = Path(out_dir) / f"{name}.h5"
        if p.exists() and not force:
            continue
        import_dataset(name, str(p), test_fraction=test_fraction, standardize=True, seed=seed,
                       force=force)
        written.append(p)
    return written


def describe(path, ds: Dataset) -> str:
    """``wrote PATH: NAME, R train + R test rows, F features, C classes, task T (--model M)``"""
    model = next(m for m, t in MODEL_TASK.items() if t == ds.task)
    classes = f"{ds.n_classes} classes, " if ds.task != "regression" else ""
    return (f"wrote {path}: {ds.name}, {ds.X.shape[0]} train + {ds.X_test.shape[0]} test rows, "
            f"{ds.n_features} features, {classes}task {ds.task} (--model {model})")


def print_bundled(out_dir: str, written: list[Path]) -> None:
    """What ``data bundled`` wrote, one line per dataset."""
    if not written:
        print(f"{out_dir}: bundled datasets already present (--force to rebuild)")
    for p in written:
        print(describe(p, read_dataset(p)))


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``mpicode data import`` (for the CLI's subparser)."""
    p.add_argument("source", help="digits | breast_cancer | diabetes (scikit-learn), "
                   "or a CSV, LIBSVM/svmlight or NPZ file")
    p.add_argument("--out", required=True, metavar="PATH.h5", help="dataset file to write")
    p.add_argument("--test-fraction", type=float, default=0.2, help="held-out share (0.2)")
    p.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=False,
                   help="scale features with the training mean and std (default: off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle (0)")
    p.add_argument("--label-column", default="-1",
                   help="CSV label column: index (negative from the end) or header name (-1)")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="auto",
                   help="input format (auto: by extension, then by content)")
    p.add_argument("--task", choices=TASKS, default="auto",
                   help="auto: 0/1 or -1/+1 binary, small non-negative ints multiclass, "
                        "else regression")
    p.add_argument("--name", default=None, help="dataset name (default: source file stem)")
    p.add_argument("--force", action="store_true", help="overwrite --out")


def run_import(args: argparse.Namespace) -> int:
    """Run ``mpicode data import`` from parsed arguments; prints one summary line."""
    lc = int(args.label_column) if _is_int(args.label_column) else args.label_column
    notes: list[str] = []
    ds = import_dataset(args.source, args.out, test_fraction=args.test_fraction,
                        standardize=args.standardize, seed=args.seed, label_column=lc,
                        fmt=args.fmt, task=args.task, force=args.force, name=args.name,
                        notes=notes)
    for note in notes:
        print(f"note: {note}")
    print(describe(args.out, ds))
    return 0


def main_import(argv: list[str] | None = None) -> int:
    """``mpicode data import SOURCE --out PATH [...]`` as a function of its arguments."""
    p = argparse.ArgumentParser(prog="mpicode data import",
                                description="Import a dataset into the mpicode HDF5 format.")
    add_import_arguments(p)
    return run_import(p.parse_args(argv))


def main_bundled(argv: list[str] | None = None) -> int:
    """Build the scikit-learn bundled datasets (``make data``)."""
    p = argparse.ArgumentParser(prog="mpicode data bundled",
                                description="Write digits.h5, breast_cancer.h5, diabetes.h5.")
    p.add_argument("--out-dir", default="data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    print_bundled(a.out_dir, build_bundled(a.out_dir, force=a.force, seed=a.seed))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("import", "bundled"):
        print("usage: python -m mpicode.io.dataimport {import,bundled} ...", file=sys.stderr)
        return 2
    try:
        return (main_import if argv[0] == "import" else main_bundled)(argv[1:])
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
