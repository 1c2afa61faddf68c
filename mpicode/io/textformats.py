"""Text dataset formats for :mod:`mpicode.io.dataimport`: CSV and LIBSVM/svmlight.

Malformed input is a :class:`~mpicode.config.UsageError` whose one-line message names the file
and the line or column.
"""

from __future__ import annotations

import math

import numpy as np

from mpicode import memory
from mpicode.errors import UsageError
from mpicode.io.labels import encode_text


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
             ) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """CSV (``,``, ``;``, tab or whitespace separated; an optional header line) -> (X, y,
    label mapping or None). Features must be numbers; text labels (``setosa``) are encoded
    0..K-1 in sorted order.

    ``label_column``: index (negative from the end) or header name of the label column.
    Blank lines and lines starting with ``#`` are skipped.
    """
    rows: list[tuple[int, list[str]]] = []
    for lineno, line in _lines(path):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if delimiter is None:
            delimiter = next((c for c in (",", ";", "\t") if c in s), " ")
        toks = [t.strip() for t in (s.split() if delimiter == " " else s.split(delimiter))]
        if rows and len(toks) != len(rows[0][1]):
            raise UsageError(f"{path}:{lineno}: ragged CSV: {len(toks)} columns, expected "
                             f"{len(rows[0][1])}")
        rows.append((lineno, toks))
    header = _csv_header(rows)
    if header is not None:
        rows = rows[1:]
    if not rows:
        raise UsageError(f"{path}: no data rows")
    ncol = len(rows[0][1])
    lc = _label_index(path, label_column, header, ncol)
    X = np.array([[_number(t, f"{path}:{n}, column {c + 1}") for c, t in enumerate(r) if c != lc]
                  for n, r in rows], np.float64).reshape(len(rows), ncol - 1)
    labels = [r[lc] for _, r in rows]
    if all(_is_number(t) for t in labels):
        return X, np.array([_number(t, f"{path}:{n}, column {lc + 1}")
                            for t, (n, _) in zip(labels, rows, strict=True)]), None
    y, mapping = encode_text(labels)
    return X, y, mapping


def _csv_header(rows) -> list[str] | None:
    """The first row is a header when one of its cells is text where the next row has a
    number (text labels alone do not make a header); a lone row with text is one too."""
    if not rows:
        return None
    first = rows[0][1]
    if all(_is_number(t) for t in first):
        return None
    if len(rows) == 1:
        return first
    nxt = rows[1][1]
    return first if any(not _is_number(a) and _is_number(b) for a, b in zip(first, nxt,
                                                                          strict=True)) else None


def _label_index(path, label_column, header, ncol) -> int:
    if isinstance(label_column, str) and not _is_int(label_column):
        if header is None or label_column not in header:
            raise UsageError(f"{path}: no column named {label_column!r} (header: "
                             f"{', '.join(header) if header else 'none'})")
        return header.index(label_column)
    lc = int(label_column)
    if not -ncol <= lc < ncol:
        raise UsageError(f"{path}: --label-column {lc} out of range ({ncol} columns)")
    if ncol < 2:
        raise UsageError(f"{path}: need at least one feature column and a label column")
    return lc % ncol


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
        if "," in toks[0] or (":" in toks[0] and not toks[0].startswith("qid")):
            raise UsageError(f"{where}: label {toks[0]!r}: multilabel not supported (one "
                             "class label per line)" if "," in toks[0] else
                             f"{where}: no label before the features")
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
    memory.check(memory.data_bytes(len(labels), d), f"{path}: {len(labels)} rows x {d} "
                 f"features (largest index {hi})")
    X = np.zeros((len(labels), d))
    for r, (ia, va) in enumerate(entries):
        if ia.size and ia.max() - base >= d:
            raise UsageError(f"{path}: feature index {ia.max()} exceeds {d} features")
        X[r, ia - base] = va
    return X, np.array(labels, np.float64)
