"""Datasets: the on-disk HDF5 format, the seeded synthetic generator, and partitioning.

Dataset file (HDF5): datasets ``X`` (n x d), ``y`` (n,), ``X_test``, ``y_test``; attributes
``name``, ``task`` ("binary", "multiclass", "regression"), ``n_classes`` (0 for regression),
``format`` ("mpicode-dataset"), ``created``, plus whatever the writer adds (the importer records
its source and options). ``mpicode data synth --samples --features --out`` writes one;
``mpicode data import`` (:mod:`mpicode.io.dataimport`) converts CSV, LIBSVM, NPZ and the
scikit-learn bundled sets. Rows are shuffled when a file is written, so file order is IID.

Partitioning (:func:`partition_rows`) maps the K micro-partitions to row index arrays:
``iid`` (contiguous ranges in file order), ``sorted`` (by label: every partition holds a narrow
label range, the hardest non-IID case) and ``dirichlet:ALPHA`` (each class is spread over the
partitions with Dirichlet(ALPHA) proportions: small ALPHA, strong label skew; seeded).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mpicode import memory
from mpicode.errors import UsageError
from mpicode.io import safefile
from mpicode.options import file_kind

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


def synthetic(samples: int, features: int, seed: int, test_fraction: float = 0.2,
              task: str = "binary", n_classes: int = 4) -> Dataset:
    """Seeded synthetic data, X ~ N(0, 1).

    ``binary``: y ~ Bernoulli(sigmoid(X w* + noise)) (the default; unchanged by the other
    tasks); ``multiclass``: y = argmax(X W* + Gumbel noise) over ``n_classes``;
    ``regression``: y = X w* + N(0, 0.5^2).
    """
    rng = np.random.default_rng([seed, 0xDA7A])
    n_test = max(1, int(round(samples * test_fraction)))
    n = samples + n_test
    X = rng.standard_normal((n, features))
    if task == "multiclass":
        W = rng.standard_normal((features, n_classes)) * (3.0 / np.sqrt(features))
        y = np.argmax(X @ W + rng.gumbel(size=(n, n_classes)), axis=1).astype(np.float64)
    else:
        w = rng.standard_normal(features) * (3.0 / np.sqrt(features))
        z = X @ w + 0.5 * rng.standard_normal(n)
        if task == "regression":
            y = z
            n_classes = 0
        else:
            y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.float64)
            n_classes = 2
    return Dataset("synthetic", X[:samples].copy(), y[:samples].copy(), X[samples:].copy(),
                   y[samples:].copy(), task, n_classes)


def write_dataset(ds: Dataset, path: str, force: bool = False, attrs: dict | None = None) -> None:
    """Write ``ds`` as a dataset file (:func:`mpicode.io.safefile.output`: built under a
    temporary name, never through a symlink, named only when complete; an existing ``path``
    is refused unless ``force``); ``attrs`` are extra root attributes."""
    with safefile.output(path, force=force) as tmp:
        with h5py.File(tmp, "x") as f:
            for k in ("X", "y", "X_test", "y_test"):
                f.create_dataset(k, data=getattr(ds, k))
            f.attrs.update(name=ds.name, task=ds.task, n_classes=ds.n_classes,
                           format=DATA_FORMAT, created=_dt.datetime.now(_dt.UTC).isoformat())
            if attrs:
                f.attrs.update(attrs)


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


def _h5_reason(e: Exception) -> str:
    """The useful part of an h5py error: 'Unable to ... (truncated file: eof = ...)' gives
    'truncated file: eof = ...'; one line, whatever the exception."""
    text = " ".join(str(e).split())
    if text.endswith(")") and "(" in text:
        text = text[text.index("(") + 1:-1]
    return text or e.__class__.__name__


def _first_bad(a: np.ndarray) -> str:
    """Where the first NaN or inf of ``a`` is and what it is: ``[3, 2] is NaN``."""
    bad = np.argwhere(~np.isfinite(a))
    idx = tuple(int(i) for i in bad[0])
    v = float(a[idx])
    what = "NaN" if np.isnan(v) else ("inf" if v > 0 else "-inf")
    more = f" ({len(bad)} NaN or inf values)" if len(bad) > 1 else ""
    return f"[{', '.join(map(str, idx))}] is {what}{more}"


def read_dataset(path: str | Path) -> Dataset:
    """Read and check a dataset file; any problem is a one-line UsageError naming the file.

    Checked: readable HDF5; ``X``, ``y``, ``X_test``, ``y_test`` present, real numbers, all
    finite; ``X``/``X_test`` 2-D with the same columns (at least one), ``y``/``y_test`` 1-D
    with one label per row; at least one training row; attributes of the expected kinds.
    """
    path = str(path)
    where = f"dataset {path}"
    kind = file_kind(path)
    if kind is not None:  # a FIFO would block the open for ever
        raise UsageError(f"{where}: is {kind}, not a dataset file")
    try:
        f = h5py.File(path, "r", locking=False)
    except (OSError, ValueError) as e:
        raise UsageError(f"{where}: not a readable HDF5 file ({_h5_reason(e)})") from None
    with f:
        try:
            missing = [k for k in ("X", "y", "X_test", "y_test")
                       if not isinstance(f.get(k), h5py.Dataset)]
        except Exception as e:  # a corrupt object header or a dangling link
            raise UsageError(f"{where}: cannot read data ({_h5_reason(e)})") from None
        if missing:
            raise UsageError(f"{where}: missing {', '.join(missing)} (not an mpicode dataset? "
                             "mpicode data import converts CSV, LIBSVM and NPZ)")
        _check_size(f, where)
        try:
            arrs = {k: np.asarray(f[k][...]) for k in ("X", "y", "X_test", "y_test")}
        except Exception as e:  # truncated or corrupt chunks; h5py raises several kinds
            raise UsageError(f"{where}: cannot read data ({_h5_reason(e)})") from None
        try:
            task = _attr_str(f.attrs.get("task", "binary"))
            n_classes = int(f.attrs.get("n_classes", 2))
            name = _attr_str(f.attrs.get("name", Path(path).stem))
        except (TypeError, ValueError, OSError):
            raise UsageError(f"{where}: bad attributes (task, n_classes, name)") from None
    if task not in ("binary", "multiclass", "regression"):
        raise UsageError(f"{where}: task {task!r} must be binary, multiclass or regression")
    if n_classes < 0:
        raise UsageError(f"{where}: n_classes {n_classes} must be >= 0")
    _check_arrays(arrs, where)
    X, y, Xt, yt = arrs["X"], arrs["y"], arrs["X_test"], arrs["y_test"]
    return Dataset(name, np.ascontiguousarray(X, np.float64), y.astype(np.float64),
                   np.ascontiguousarray(Xt, np.float64), yt.astype(np.float64), task, n_classes)


def _check_arrays(arrs: dict, where: str) -> None:
    """Kinds, shapes and finiteness of a dataset's four arrays (one line per problem)."""
    for k, a in arrs.items():
        if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer)
                                   or np.issubdtype(a.dtype, np.floating)):
            raise UsageError(f"{where}: {k} has non-numeric dtype {a.dtype} "
                             "(need integers or floats)")
    X, y, Xt, yt = arrs["X"], arrs["y"], arrs["X_test"], arrs["y_test"]
    for k, a in (("X", X), ("X_test", Xt)):
        if a.ndim != 2:
            raise UsageError(f"{where}: {k} must be 2-D (rows x features), has shape {a.shape}")
    for k, a in (("y", y), ("y_test", yt)):
        if a.ndim != 1:
            raise UsageError(f"{where}: {k} must be 1-D (one label per row), has shape "
                             f"{a.shape}")
    if y.shape[0] != X.shape[0]:
        raise UsageError(f"{where}: y has {y.shape[0]} rows, X has {X.shape[0]}")
    if yt.shape[0] != Xt.shape[0]:
        raise UsageError(f"{where}: y_test has {yt.shape[0]} rows, X_test has {Xt.shape[0]}")
    if Xt.shape[1] != X.shape[1]:
        raise UsageError(f"{where}: X_test has {Xt.shape[1]} columns, X has {X.shape[1]}")
    if X.shape[0] == 0:
        raise UsageError(f"{where}: no training rows")
    if X.shape[1] == 0:
        raise UsageError(f"{where}: no features (X has 0 columns)")
    for k, a in arrs.items():
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise UsageError(f"{where}: {k}{_first_bad(a)}")


def _check_size(f: h5py.File, where: str) -> None:
    """Refuse (before reading) arrays whose header shapes do not fit in memory."""
    try:
        cells = sum(int(np.prod(f[k].shape, dtype=object)) for k in ("X", "y", "X_test", "y_test"))
    except Exception as e:  # a corrupt object header
        raise UsageError(f"{where}: cannot read data ({_h5_reason(e)})") from None
    memory.check(8 * cells * memory.DATA_COPIES, f"{where}: its arrays")


def dataset_shape(spec: str) -> tuple[int, int, int, int] | None:
    """(rows, columns, test rows, n_classes) from a dataset file's header, nothing read;
    None when the file cannot tell (the loader then reports why)."""
    p = resolve_path(spec)
    if p is None:
        return None
    try:
        with h5py.File(p, "r", locking=False) as f:
            X, Xt = f["X"].shape, f["X_test"].shape
            n_classes = int(f.attrs.get("n_classes", 2))
            return int(X[0]), int(X[1]), int(Xt[0]), n_classes
    except Exception:  # any unreadable or odd file: read_dataset gives the one line
        return None


def _attr_str(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, (str, np.str_)):
        return str(v)
    raise TypeError(v)


MODEL_TASK = {"logistic": "binary", "softmax": "multiclass", "least-squares": "regression",
              "mlp": "multiclass"}


def check_labels(ds: Dataset, model: str, where: str) -> None:
    """Labels must fit the model: logistic 0/1, softmax ints 0..C-1, least-squares finite."""
    for k in ("y", "y_test"):
        y = getattr(ds, k)
        if model == "logistic":
            bad = np.flatnonzero((y != 0) & (y != 1))
            need = "0/1"
        elif model in ("softmax", "mlp"):
            bad = np.flatnonzero((y != np.round(y)) | (y < 0) | (y >= max(ds.n_classes, 1)))
            need = f"integers 0..{ds.n_classes - 1} (n_classes = {ds.n_classes})"
        else:
            bad = np.flatnonzero(~np.isfinite(y))
            need = "finite"
        if bad.size:
            n = f"{bad.size} bad label" + ("s" if bad.size > 1 else "")
            raise UsageError(f"dataset {where}: {k}[{bad[0]}] = {float(y[bad[0]])!r}: labels "
                             f"must be {need} for model {model} ({n})" + _model_hint(ds, model))


def _model_hint(ds: Dataset, model: str) -> str:
    """The model that fits the dataset's task, when it is not the one asked for."""
    fits = next((m for m, t in MODEL_TASK.items() if t == ds.task), None)
    if fits is None or fits == model:
        return ""
    what = f"{ds.n_classes} classes" if ds.task == "multiclass" else ds.task
    return f"; the dataset is {ds.task} ({what}): use --model {fits}"


def load(cfg) -> Dataset:
    """The dataset a configuration names (every rank calls this and gets the same data).

    The built-in ``synthetic`` set follows the model (binary for logistic, 4 classes for
    softmax, a linear target for least-squares). Arrays are cast to ``cfg.dtype``.
    """
    if cfg.dataset == "synthetic":
        ds = synthetic(cfg.samples, cfg.features, cfg.seed, task=MODEL_TASK[cfg.model])
        where = "synthetic"
    else:
        p = resolve_path(cfg.dataset)
        if p is None:
            raise UsageError(f"dataset not found: {cfg.dataset} (a built-in name "
                             f"({', '.join(BUILTIN)}), data/NAME.h5, or a path)")
        ds = read_dataset(p)
        where = str(p)
        if cfg.model in ("softmax", "mlp") and ds.task != "multiclass" and ds.n_classes < 2:
            ds.n_classes = int(max(ds.y.max(), ds.y_test.max())) + 1
    check_labels(ds, cfg.model, where)
    dtype = np.dtype(getattr(cfg, "dtype", "float64"))
    if dtype != np.float64:
        with np.errstate(over="ignore"):
            ds.X, ds.y = ds.X.astype(dtype), ds.y.astype(dtype)
            ds.X_test, ds.y_test = ds.X_test.astype(dtype), ds.y_test.astype(dtype)
        for k in ("X", "y", "X_test", "y_test"):
            a = getattr(ds, k)
            if not np.all(np.isfinite(a)):
                raise UsageError(f"dataset {where}: {k}{_first_bad(a)} in {dtype} "
                                 f"(out of range: use --dtype float64)")
    return ds


def partition_bounds(n_rows: int, K: int) -> np.ndarray:
    """Row ranges of K near-equal contiguous partitions: partition k is rows b[k]:b[k+1].

    The dataset is i.i.d. in row order (the generator and the importer shuffle), so contiguous
    partitions are IID partitions.
    """
    if K > n_rows:
        raise UsageError(f"--partitions {K} exceeds the {n_rows} training rows")
    return np.linspace(0, n_rows, K + 1).round().astype(np.int64)


def _split(order: np.ndarray, K: int) -> list[np.ndarray]:
    b = np.linspace(0, order.size, K + 1).round().astype(np.int64)
    return [np.sort(order[b[k]:b[k + 1]]) for k in range(K)]


def _class_ids(y: np.ndarray, bins: int = 10) -> np.ndarray:
    """Integer labels as they are; a continuous (regression) target in quantile bins."""
    if np.all(y == np.round(y)) and np.unique(y).size <= 1000:
        return np.unique(y, return_inverse=True)[1]
    edges = np.quantile(y, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, y, side="right")


def partition_rows(y: np.ndarray, K: int, scheme: str = "iid", seed: int = 0) -> list[np.ndarray]:
    """Row indices (int64, ascending) of the K micro-partitions; every row in exactly one.

    ``iid``: K near-equal contiguous ranges (file order is shuffled, so they are IID).
    ``sorted``: rows ordered by label (stable), then cut into K near-equal ranges.
    ``dirichlet:ALPHA``: for each class, proportions over the K partitions drawn from
    Dirichlet(ALPHA, ..., ALPHA) (seeded by ``seed``), its rows (in a seeded random order)
    cut accordingly; redrawn (up to 100 times) until every partition has a row, then empty
    partitions take rows from the largest. Regression targets are binned into 10 quantiles.
    """
    n = int(y.shape[0])
    if K > n:
        raise UsageError(f"--partitions {K} exceeds the {n} training rows")
    if scheme == "iid":
        b = partition_bounds(n, K)
        return [np.arange(b[k], b[k + 1], dtype=np.int64) for k in range(K)]
    if scheme == "sorted":
        return _split(np.argsort(y, kind="stable").astype(np.int64), K)
    if not scheme.startswith("dirichlet:"):
        raise UsageError(f"--partitioning: unknown scheme {scheme!r} "
                         "(iid, sorted or dirichlet:ALPHA)")
    try:
        alpha = float(scheme[len("dirichlet:"):])
    except ValueError:
        alpha = -1.0
    if not (alpha > 0 and np.isfinite(alpha)):
        raise UsageError(f"--partitioning {scheme}: ALPHA must be a number > 0")
    cls = _class_ids(np.asarray(y))
    rng = np.random.default_rng([seed, 0xD1C4])
    members = [rng.permutation(np.flatnonzero(cls == c)) for c in range(int(cls.max()) + 1)]
    for _ in range(100):
        parts: list[list[np.ndarray]] = [[] for _ in range(K)]
        for m in members:
            if m.size == 0:
                continue
            p = rng.dirichlet(np.full(K, alpha))
            cuts = np.floor(np.cumsum(p)[:-1] * m.size + 0.5).astype(np.int64)
            for k, chunk in enumerate(np.split(m, cuts)):
                parts[k].append(chunk)
        out = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if all(o.size for o in out):
            return out
    for k in range(K):  # still empty after the redraws: take rows from the largest
        if out[k].size == 0:
            big = max(range(K), key=lambda j: out[j].size)
            out[k], out[big] = out[big][-1:], out[big][:-1]
    return out
