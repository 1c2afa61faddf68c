"""NPZ import: a zip of ``.npy`` members ``X`` (n x d) and ``y`` (n,), whose headers are
checked (a zip at all, numeric dtypes, no object arrays, a size that fits in memory) before
any array is loaded; every problem is one line, exit code 2::

    mpicode data import points.npz --out data/points.h5
"""

from __future__ import annotations

import numpy as np

from mpicode import memory
from mpicode.errors import UsageError


def read_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    """NPZ with arrays ``X`` (n x d) and ``y`` (n,): a zip of .npy members whose headers
    are checked (numeric dtype, a size that fits in memory) before anything is loaded."""
    import zipfile
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: not a readable NPZ file (not a zip archive)")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(f"{path}: not a readable NPZ file ({_one_line(e)})") from None
    with z:
        missing = [k for k in ("X", "y") if k not in z.files]
        if missing:
            raise UsageError(f"{path}: missing array(s) {', '.join(missing)} "
                             f"(found: {', '.join(z.files) or 'none'})")
        _check_npz_headers(z, path)
        try:
            X, y = z["X"], z["y"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise UsageError(f"{path}: not a readable NPZ file ({_one_line(e)})") from None
    for k, a in (("X", X), ("y", y)):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise UsageError(f"{path}: array {k} is not numeric (dtype {a.dtype})")
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise UsageError(f"{path}: need X (n x d) and y (n,), got X {X.shape}, y {y.shape}")
    X = X.astype(np.float64)
    y = y.astype(np.float64)
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        raise UsageError(f"{path}: X row {bad[0][0]}, column {bad[0][1]}: NaN or inf")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise UsageError(f"{path}: y row {bad[0]}: NaN or inf")
    return X, y


def _one_line(e: Exception) -> str:
    return (str(e).splitlines() or [e.__class__.__name__])[0]


def _check_npz_headers(z, path: str) -> None:
    """Object (pickled) arrays and shapes too large for memory, from the .npy headers."""
    import zipfile

    total = 0
    for k in ("X", "y"):
        try:
            with z.zip.open(f"{k}.npy") as f:
                fmt = np.lib.format
                read = (fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0)
                        else fmt.read_array_header_2_0)
                shape, _, dtype = read(f)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
            raise UsageError(f"{path}: array {k}: not a readable .npy member "
                             f"({_one_line(e)})") from None
        if dtype.hasobject:
            raise UsageError(f"{path}: array {k} holds Python objects (dtype {dtype}): "
                             "refused, it would need unpickling")
        total += int(np.prod(shape, dtype=object))
    memory.check(8 * total * memory.DATA_COPIES, f"{path}: arrays X and y")
