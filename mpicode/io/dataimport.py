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
import math
import sys
from pathlib import Path

import numpy as np

from mpicode.config import UsageError
from mpicode.io.datasets import Dataset, write_dataset
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


def _number(tok: str, where: str) -> float:
    try:
        v = float(tok)
    except ValueError:
        raise UsageError(f"{where}: not a number: {tok!r}") from None
    if not math.isfinite(v):
        raise UsageError(f"{where}: NaN or inf ({tok!r})")
    return v


def _lines(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            yield from enumerate(f, start=1)
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror})") from None


def read_csv(path: str, label_column: int | str = -1, delimiter: str | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Numeric CSV (``,``, ``;``, tab or whitespace separated; an optional header line).

    ``label_column``: index (negative from the end) or header name of the label column.
    Blank lines and lines starting with ``#`` are skipped.
    """
    rows: list[list[float]] = []
    header: list[str] | None = None
    ncol = None
    for lineno, line in _lines(path):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if delimiter is None:
            delimiter = next((c for c in (",", ";", "\t") if c in s), " ")
        toks = [t.strip() for t in (s.split() if delimiter == " " else s.split(delimiter))]
        if ncol is None:
            ncol = len(toks)
            if header is None and not rows and not all(_is_number(t) for t in toks):
                header = toks
                continue
        if len(toks) != ncol:
            raise UsageError(f"{path}:{lineno}: ragged CSV: {len(toks)} columns, expected {ncol}")
        rows.append([_number(t, f"{path}:{lineno}, column {c + 1}") for c, t in enumerate(toks)])
    if not rows:
        raise UsageError(f"{path}: no data rows")
    A = np.array(rows, np.float64)
    if isinstance(label_column, str) and not _is_int(label_column):
        if header is None or label_column not in header:
            raise UsageError(f"{path}: no column named {label_column!r} (header: "
                             f"{', '.join(header) if header else 'none'})")
        lc = header.index(label_column)
    else:
        lc = int(label_column)
        if not -ncol <= lc < ncol:
            raise UsageError(f"{path}: --label-column {lc} out of range ({ncol} columns)")
        lc %= ncol
    if ncol < 2:
        raise UsageError(f"{path}: need at least one feature column and a label column")
    return np.delete(A, lc, axis=1), A[:, lc].copy()


def _is_number(t: str) -> bool:
    try:
        float(t)
    except ValueError:
        return False
    return True


def _is_int(t: str) -> bool:
    try:
        int(t)
    except ValueError:
        return False
    return True


def read_libsvm(path: str, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """LIBSVM/svmlight: ``label idx:value ...`` per line, ``#`` comments, ``qid:`` ignored.

    Indices are 1-based (0-based if an index 0 occurs); missing entries are 0.
    """
    labels: list[float] = []
    entries: list[tuple[np.ndarray, np.ndarray]] = []
    lo, hi = None, -1
    for lineno, line in _lines(path):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        toks = s.split()
        where = f"{path}:{lineno}"
        labels.append(_number(toks[0], f"{where}: label"))
        idx, val = [], []
        for t in toks[1:]:
            k, sep, v = t.partition(":")
            if k == "qid":
                continue
            if not sep or not k.isdigit():
                raise UsageError(f"{where}: bad LIBSVM entry {t!r} (expected INDEX:VALUE)")
            idx.append(int(k))
            val.append(_number(v, f"{where}: feature {k}"))
        ia = np.array(idx, np.int64)
        if ia.size != np.unique(ia).size:
            raise UsageError(f"{where}: duplicate feature index")
        if ia.size:
            lo = int(ia.min()) if lo is None else min(lo, int(ia.min()))
            hi = max(hi, int(ia.max()))
        entries.append((ia, np.array(val, np.float64)))
    if not labels:
        raise UsageError(f"{path}: no data lines")
    base = 0 if lo == 0 else 1
    d = max(hi + 1 - base, 0) if n_features is None else int(n_features)
    if d == 0:
        raise UsageError(f"{path}: no features")
    from mpicode.engine import budget
    budget.check(budget.data_bytes(len(labels), d), f"{path}: {len(labels)} rows x {d} "
                 f"features (largest index {hi})")
    X = np.zeros((len(labels), d))
    for r, (ia, va) in enumerate(entries):
        if ia.size and ia.max() - base >= d:
            raise UsageError(f"{path}: feature index {ia.max()} exceeds {d} features")
        X[r, ia - base] = va
    return X, np.array(labels, np.float64)


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


def infer_task(y: np.ndarray, task: str, where: str) -> tuple[np.ndarray, str, int]:
    """(labels, task, n_classes). ``auto``: {0,1} or {-1,1} -> binary (-1 becomes 0);
    non-negative integers with 3..1000 values -> multiclass; anything else -> regression."""
    ints = bool(np.all(y == np.round(y)))
    vals = np.unique(y)
    if task == "auto":
        if set(vals.tolist()) <= {0.0, 1.0} or set(vals.tolist()) == {-1.0, 1.0}:
            task = "binary"
        elif ints and vals.min() >= 0 and vals.max() < 1000:
            task = "multiclass"
        else:
            task = "regression"
    if task == "binary":
        if set(vals.tolist()) == {-1.0, 1.0}:
            y = (y > 0).astype(np.float64)
        elif not set(vals.tolist()) <= {0.0, 1.0}:
            raise UsageError(f"{where}: task binary needs labels 0/1 or -1/+1, found "
                             f"{vals[:5].tolist()}")
        return y, task, 2
    if task == "multiclass":
        if not ints or vals.min() < 0:
            raise UsageError(f"{where}: task multiclass needs integer labels >= 0, found "
                             f"{vals[:5].tolist()}")
        return y, task, int(vals.max()) + 1
    return y, "regression", 0


def import_dataset(source: str, out: str, *, test_fraction: float = 0.2,
                   standardize: bool = False, seed: int = 0, label_column: int | str = -1,
                   fmt: str = "auto", task: str = "auto", force: bool = False,
                   name: str | None = None) -> Dataset:
    """Read ``source``, shuffle, split, standardise, write ``out``; returns the dataset.

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
    if source in SKLEARN_SETS and not Path(source).exists():
        X, y = read_sklearn(source)
        task = SKLEARN_SETS[source] if task == "auto" else task
        where = f"scikit-learn {source}"
    else:
        if not Path(source).is_file():
            raise UsageError(f"source not found: {source} (a file, or one of "
                             f"{', '.join(SKLEARN_SETS)} with scikit-learn installed)")
        kind = _sniff(source) if fmt == "auto" else fmt
        if kind == "npz":
            X, y = read_npz(source)
        elif kind == "libsvm":
            X, y = read_libsvm(source)
        else:
            X, y = read_csv(source, label_column)
        where = source
    y, task, n_classes = infer_task(y, task, where)
    n = X.shape[0]
    n_test = int(round(n * test_fraction))
    if n - n_test < 1:
        raise UsageError(f"{where}: {n} rows leave no training rows at --test-fraction "
                         f"{test_fraction}")
    perm = np.random.default_rng([seed, 0x1A9]).permutation(n)
    X, y = X[perm], y[perm]
    Xt, yt, X, y = X[:n_test], y[:n_test], X[n_test:], y[n_test:]
    if standardize:
        mu = X.mean(axis=0)
        sd = X.std(axis=0)
        sd[sd == 0] = 1.0
        X = (X - mu) / sd
        Xt = (Xt - mu) / sd
    y_offset = 0.0
    if standardize and task == "regression":
        # the models have no intercept: centre the target too (RMSE keeps the original units)
        y_offset = float(y.mean())
        y, yt = y - y_offset, yt - y_offset
    ds = Dataset(name or Path(source).stem, np.ascontiguousarray(X), y.copy(),
                 np.ascontiguousarray(Xt), yt.copy(), task, n_classes)
    write_dataset(ds, out, force=force, attrs={
        "source": str(source), "seed": int(seed), "test_fraction": float(test_fraction),
        "standardized": bool(standardize), "y_offset": y_offset})
    return ds


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
    ds = import_dataset(args.source, args.out, test_fraction=args.test_fraction,
                        standardize=args.standardize, seed=args.seed, label_column=lc,
                        fmt=args.fmt, task=args.task, force=args.force, name=args.name)
    print(f"wrote {args.out}: {ds.X.shape[0]} train + {ds.X_test.shape[0]} test rows, "
          f"{ds.n_features} features, task {ds.task}"
          + (f", {ds.n_classes} classes" if ds.task == "multiclass" else ""))
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
    written = build_bundled(a.out_dir, force=a.force, seed=a.seed)
    print(f"wrote {', '.join(map(str, written))}" if written else
          f"{a.out_dir}: bundled datasets already present (--force to rebuild)")
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
