"""Labels of imported datasets: the task they imply, and their encoding as 0..K-1.

The models want class labels 0..K-1 (logistic: 0/1). Sources label classes otherwise: LIBSVM
multiclass files count from 1 (``1..4`` would otherwise be 5 classes with a phantom class 0),
binary ones use -1/+1 or 1/2, CSV files name them (``setosa``). :func:`infer_task` maps them
to 0..K-1 in sorted order and returns the mapping, which the importer prints and records as
the dataset attribute ``label_mapping`` (JSON: original label -> code).
"""

from __future__ import annotations

import json

import numpy as np

from mpicode.errors import UsageError


def encode_text(labels: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Text class names -> codes 0..K-1 (sorted names) and the mapping."""
    names = sorted(set(labels))
    code = {n: i for i, n in enumerate(names)}
    return np.array([code[t] for t in labels], np.float64), code


def _label_text(v: float) -> str:
    return str(int(v)) if v == int(v) else repr(float(v))


def infer_task(y: np.ndarray, task: str, where: str, mapping: dict | None = None
               ) -> tuple[np.ndarray, str, int, dict | None]:
    """(labels, task, n_classes, mapping). ``auto``: two distinct integer labels -> binary;
    three or more non-negative integers below 1000 -> multiclass; anything else regression.
    Binary and multiclass labels whose smallest is not 0 are remapped in sorted order
    (-1/+1 -> 0/1, 1..4 -> 0..3); ``mapping`` (original -> code) says how, or None. A mapping
    given (text labels already encoded) is kept."""
    ints = bool(np.all(y == np.round(y)))
    vals = np.unique(y)
    two = set(vals.tolist()) <= {0.0, 1.0} or set(vals.tolist()) == {-1.0, 1.0}
    if task == "auto":
        if ints and vals.size <= 2:
            task = "binary"
            two = True  # any two integer labels: recoded below
        elif ints and vals.min() >= 0 and vals.max() < 1000:
            task = "multiclass"
        else:
            task = "regression"
    if task == "regression":
        return y, task, 0, mapping
    if task == "binary" and not (two or (mapping and vals.size <= 2)):
        raise UsageError(f"{where}: task binary needs labels 0/1 or -1/+1, found "
                         f"{vals[:5].tolist()}")
    if task == "multiclass" and not ints:
        raise UsageError(f"{where}: task multiclass needs integer labels, found "
                         f"{vals[:5].tolist()}")
    # classes that do not start at 0 (LIBSVM's 1..K, -1/+1, 1/2) are recoded; a class
    # missing in the middle of 0..K-1 keeps the others' codes (the file's own numbering)
    if task == "binary":
        recode = not set(vals.tolist()) <= {0.0, 1.0}
    else:
        recode = bool(vals.size) and vals[0] != 0
    if recode:
        y = np.searchsorted(vals, y).astype(np.float64)
        codes = {_label_text(v): i for i, v in enumerate(vals.tolist())}
        mapping = {k: codes[_label_text(float(v))] for k, v in mapping.items()} \
            if mapping else codes
    n_classes = 2 if task == "binary" else int(y.max()) + 1
    return y, task, n_classes, mapping


def mapping_note(mapping: dict | None, where: str) -> str | None:
    """One line saying how the labels were recoded (None when they were not)."""
    if not mapping:
        return None
    items = list(mapping.items())
    shown = ", ".join(f"{k} -> {v}" for k, v in items[:6]) + (", ..." if len(items) > 6 else "")
    return f"{where}: labels recoded to 0..{len(items) - 1} ({shown}); recorded as the " \
           "dataset attribute label_mapping"


def mapping_attr(mapping: dict | None) -> str:
    return json.dumps(mapping or {})
