"""Datasets: the on-disk HDF5 format, the seeded synthetic generator, and partitioning.

Dataset file (HDF5): datasets ``X`` (n x d), ``y`` (n,), ``X_test``, ``y_test``; attributes
``name``, ``task`` ("binary", "multiclass", "regression"), ``n_classes``, ``format``
("mpicode-dataset"), ``created``. ``mpicode data synth --samples --features --out`` writes one.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mpicode.config import UsageError

DATA_FORMAT = "mpicode-dataset"
BUILTIN = ("synthetic",)


@dataclass
class Dataset:
    name: str
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    task: str = "binary"
    n_classes: int = 2

    @property
    def n_features(self) -> int:
        return self.X.shape[1]


def synthetic(samples: int, features: int, seed: int, test_fraction: float = 0.2) -> Dataset:
    """Seeded binary classification: X ~ N(0, 1), y ~ Bernoulli(sigmoid(X w* + noise))."""
    rng = np.random.default_rng([seed, 0xDA7A])
    n_test = max(1, int(round(samples * test_fraction)))
    n = samples + n_test
    X = rng.standard_normal((n, features))
    w = rng.standard_normal(features) * (3.0 / np.sqrt(features))
    z = X @ w + 0.5 * rng.standard_normal(n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.float64)
    return Dataset("synthetic", X[:samples].copy(), y[:samples].copy(), X[samples:].copy(),
                   y[samples:].copy())


def write_dataset(ds: Dataset, path: str, force: bool = False) -> None:
    p = Path(path)
    if p.exists() and not force:
        raise UsageError(f"output exists: {path} (use --force to overwrite)")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(p) + ".part"
    with h5py.File(tmp, "w") as f:
        for k in ("X", "y", "X_test", "y_test"):
            f.create_dataset(k, data=getattr(ds, k))
        f.attrs.update(name=ds.name, task=ds.task, n_classes=ds.n_classes, format=DATA_FORMAT,
                       created=_dt.datetime.now(_dt.timezone.utc).isoformat())
    os.replace(tmp, p)


def resolve_path(spec: str) -> Path | None:
    """``NAME`` -> ``data/NAME.h5`` (cwd, then the repository); a path stays a path."""
    cands = [Path(spec)]
    if not spec.endswith(".h5") and "/" not in spec:
        cands += [Path("data") / f"{spec}.h5", Path(__file__).resolve().parent.parent / "data"
                  / f"{spec}.h5"]
    for c in cands:
        if c.is_file():
            return c
    return None


def read_dataset(path: str | Path) -> Dataset:
    """Read and check a dataset file; any problem is a one-line UsageError naming the file."""
    path = str(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise UsageError(f"dataset {path}: not a readable HDF5 file "
                         f"({e.__class__.__name__})") from None
    with f:
        missing = [k for k in ("X", "y", "X_test", "y_test") if k not in f]
        if missing:
            raise UsageError(f"dataset {path}: missing {', '.join(missing)}")
        try:
            arrs = {k: np.asarray(f[k][...]) for k in ("X", "y", "X_test", "y_test")}
        except Exception as e:  # truncated or corrupt chunks
            raise UsageError(f"dataset {path}: cannot read data ({e})") from None
        task = str(f.attrs.get("task", "binary"))
        n_classes = int(f.attrs.get("n_classes", 2))
        name = str(f.attrs.get("name", Path(path).stem))
    X, y, Xt, yt = arrs["X"], arrs["y"], arrs["X_test"], arrs["y_test"]
    for k, a in arrs.items():
        if not np.issubdtype(a.dtype, np.number):
            raise UsageError(f"dataset {path}: {k} has non-numeric dtype {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise UsageError(f"dataset {path}: {k} contains NaN or inf")
    if X.ndim != 2 or Xt.ndim != 2 or y.ndim != 1 or yt.ndim != 1:
        raise UsageError(f"dataset {path}: X, X_test must be 2-D and y, y_test 1-D")
    if X.shape[0] != y.shape[0] or Xt.shape[0] != yt.shape[0] or X.shape[1] != Xt.shape[1]:
        raise UsageError(f"dataset {path}: shapes do not match: X {X.shape}, y {y.shape}, "
                         f"X_test {Xt.shape}, y_test {yt.shape}")
    if X.shape[0] == 0:
        raise UsageError(f"dataset {path}: no training rows")
    return Dataset(name, np.ascontiguousarray(X, np.float64), y.astype(np.float64),
                   np.ascontiguousarray(Xt, np.float64), yt.astype(np.float64), task, n_classes)


def load(cfg) -> Dataset:
    """The dataset a configuration names (every rank calls this and gets the same data)."""
    if cfg.dataset == "synthetic":
        return synthetic(cfg.samples, cfg.features, cfg.seed)
    p = resolve_path(cfg.dataset)
    if p is None:
        raise UsageError(f"dataset not found: {cfg.dataset} (a built-in name "
                         f"({', '.join(BUILTIN)}), data/NAME.h5, or a path)")
    ds = read_dataset(p)
    if cfg.model == "logistic" and not np.all((ds.y == 0) | (ds.y == 1)):
        raise UsageError(f"dataset {p}: labels must be 0/1 for model logistic")
    return ds


def partition_bounds(n_rows: int, K: int) -> np.ndarray:
    """Row ranges of K near-equal contiguous partitions: partition k is rows b[k]:b[k+1].

    The dataset is i.i.d. in row order (the generator and the importer shuffle), so contiguous
    partitions are IID partitions.
    """
    if K > n_rows:
        raise UsageError(f"--partitions {K} exceeds the {n_rows} training rows")
    return np.linspace(0, n_rows, K + 1).round().astype(np.int64)
