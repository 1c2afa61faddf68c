"""Rows of the run log kept in memory until they are written as one block (pure numpy + h5py).

One :class:`Columns` per HDF5 group: a preallocated numpy array per field (1-D, or rows x N for
``/workers``), rows appended in place, then written with one resize and one slice write per
dataset. Missing fields get the dataset's fill value, as before.
"""

from __future__ import annotations

import h5py
import numpy as np


def fill_value(dtype: str):
    if dtype.startswith("S"):  # fixed-length bytes (a scheme's text field): empty
        return b""
    return np.nan if dtype.startswith("f") else (-1 if dtype.startswith("i") else 0)


class Columns:
    """Buffered rows of one group. ``width`` None: 1-D fields; else (rows x width) fields."""

    def __init__(self, fields: dict[str, str], width: int | None, capacity: int):
        self.fields = fields
        self.width = width
        self.fills = {k: fill_value(dt) for k, dt in fields.items()}
        self.n = 0
        self.cols = self._alloc(max(1, capacity))
        self.row_bytes = sum(c[:1].nbytes for c in self.cols.values())

    def _alloc(self, cap: int) -> dict[str, np.ndarray]:
        shape = (cap,) if self.width is None else (cap, self.width)
        return {k: np.empty(shape, dt) for k, dt in self.fields.items()}

    @property
    def capacity(self) -> int:
        return len(next(iter(self.cols.values())))


    def _reserve(self, m: int) -> None:
        cap = self.capacity
        if self.n + m <= cap:
            return
        new = self._alloc(max(2 * cap, self.n + m))
        for k, c in self.cols.items():
            new[k][:self.n] = c[:self.n]
        self.cols = new

    def put(self, values: dict) -> None:
        """One row: a scalar per field (1-D) or a vector of ``width`` per field."""
        self._reserve(1)
        i, fills = self.n, self.fills
        for k, c in self.cols.items():
            v = values.get(k)
            c[i] = fills[k] if v is None else v
        self.n = i + 1

    def put_many(self, values: dict, m: int) -> None:
        """``m`` rows: an array of length ``m`` per field."""
        if m <= 0:
            return
        self._reserve(m)
        i, fills = self.n, self.fills
        for k, c in self.cols.items():
            v = values.get(k)
            c[i:i + m] = fills[k] if v is None else v
        self.n = i + m

    def write(self, datasets: dict, start: int) -> None:
        """Append the buffered rows to ``datasets`` (name -> h5py Dataset) at row ``start``:
        one resize and one low-level hyperslab write per dataset (h5py's ``d[a:b] = x`` costs
        ten times more here, in building the selection)."""
        n = self.n
        if not n:
            return
        shape = (n,) if self.width is None else (n, self.width)
        offset = (start,) if self.width is None else (start, 0)
        mem = h5py.h5s.create_simple(shape)
        for k, c in self.cols.items():
            d = datasets[k]
            d.resize((start + n, *shape[1:]))
            space = d.id.get_space()
            space.select_hyperslab(offset, shape)
            d.id.write(mem, space, np.ascontiguousarray(c[:n]))

    def clear(self) -> None:
        self.n = 0
