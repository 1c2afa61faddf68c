"""The wire protocol between rank 0 and the workers: tags, header layouts, encode/decode.

Pure (no MPI), outside :mod:`mpicode.mpi` so that the simulator, the cost model and the
benchmarks size messages from the same layout (:func:`result_bytes`) without importing
mpi4py; unit-tested serially. Every message is a float64 buffer whose first element is the
iteration number; nothing on the hot path is pickled. A header is a :class:`Layout`: its
fields are named once, and their offsets, the header's size and every message size follow
(adding a field to RESULT is one name in ``Result``, and the value where it is written).

* ``MODEL``  0 -> i: ``[it, w...]`` at the start of iteration ``it``.
* ``TASK``   0 -> i: ``[it, task_id, stage, n, has_coeffs, delay_s, time_limit_s, p_1..p_n,
  c_1..c_n]``; ``time_limit_s`` (inf: none) is a compute budget: the worker starts no
  partition once that many seconds passed since it began the task, and sends the sum over
  the partitions it did (DropCompute, docs/design.md §3.4a).
* ``PARTIAL`` i -> 0: ``[it, task_id, n_done]``, sent just before the RESULT (or READY) of a
  task its time limit cut short: its message sums the first ``n_done`` partitions. (MPI keeps
  the order of two messages between the same pair of ranks, so it is always there first.)
* ``CANCEL`` 0 -> i: ``[it, task_id]`` (``task_id = -1``: every task of ``it``).
* ``RESULT`` i -> 0: ``[it, task_id, compute_s, delay_s, loss, metric, g...]`` (``ideal``
  channel): ``loss``, ``metric`` and ``g`` are the task's sums (each partition's weighted by
  its coefficient), so rank 0 decodes all three with the same weights.
* With an emulated uplink (``--channel`` not ideal) a finished task is announced instead:
  ``READY`` i -> 0 ``[it, task_id, nbytes, compute_s, delay_s, loss, metric]``; rank 0 runs
  the slot clock and the scheduler and answers ``GRANT`` 0 -> i ``[it, task_id, offset, nbytes,
  last]``; the worker sends exactly that byte range of its RESULT buffer as ``CHUNK`` i -> 0
  ``[it, task_id, first_element, elements...]``. A result counts as arrived when its last
  chunk is here and the slot that carried it has ended.
* ``STOP``   0 -> i: ``[-1]``; the worker waits for its sends, answers ``ACK`` and returns.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

TAG_MODEL, TAG_TASK, TAG_CANCEL, TAG_STOP, TAG_RESULT, TAG_ACK = range(11, 17)
TAG_READY, TAG_GRANT, TAG_CHUNK = range(17, 20)
TAG_STARTUP = 20  # i -> 0 at each start-up step: [step, pid, host crc] (mpicode.mpi.startup)
TAG_PARTIAL = 21  # i -> 0: [it, task_id, n_done], a cut-short task's partitions (DropCompute)

# Every message starts with the iteration (``IT``) and, except MODEL and STOP, the task id
# (``TASK``).
IT, TASK = 0, 1


class Layout:
    """The header of one kind of message: named float64 fields at offsets 0, 1, ..., then
    the payload. ``layout.NAME`` is the offset of field ``name``, ``layout.HEADER`` the
    number of fields."""

    def __init__(self, kind: str, *fields: str):
        self.kind, self.fields, self.HEADER = kind, fields, len(fields)
        for i, f in enumerate(fields):
            setattr(self, f.upper(), i)

    def size(self, n_payload: int) -> int:
        """Elements of a message with ``n_payload`` elements after the header."""
        return self.HEADER + int(n_payload)

    def nbytes(self, n_payload: int) -> int:
        """Bytes of such a message (float64)."""
        return 8 * self.size(n_payload)

    def write(self, out: np.ndarray, **values) -> None:
        """Fill ``out``'s header from one keyword per field (all of them)."""
        if values.keys() != set(self.fields):
            raise ValueError(f"{self.kind} header: fields {self.fields}, got {tuple(values)}")
        out[:self.HEADER] = tuple(values[f] for f in self.fields)

    def __repr__(self):
        return f"Layout({self.kind!r}, {', '.join(map(repr, self.fields))})"


# What a worker reports of a finished task, in RESULT's header and in READY alike (one
# definition: adding a field here adds it to both messages, to ``Ready`` and to every size)
REPORT = ("compute_s", "delay_s", "loss", "metric")

# RESULT: the gradient follows the header
Result = Layout("RESULT", "it", "task", *REPORT)
# READY: header only (the RESULT buffer's size, then the report)
ReadyLayout = Layout("READY", "it", "task", "nbytes", *REPORT)
# TASK: then n partitions, then (if HAS_COEFFS) n coefficients
Task = Layout("TASK", "it", "task", "stage", "n", "has_coeffs", "delay_s", "time_limit_s")

# A decoded READY, field for field in ReadyLayout's order
Ready = NamedTuple("Ready", [("it", int), ("task_id", int), ("nbytes", int)]
                   + [(f, float) for f in REPORT])


class Grant(NamedTuple):
    it: int
    task_id: int
    offset: int
    nbytes: int
    last: bool


# CHUNK: then the elements of the RESULT buffer from FIRST on
Chunk = Layout("CHUNK", "it", "task", "first")


RESULT_HEADER, TASK_HEADER, CHUNK_HEADER = Result.HEADER, Task.HEADER, Chunk.HEADER


def result_bytes(dim: int) -> int:
    """Bytes of the RESULT message of a model with ``dim`` parameters (header + gradient):
    what the uplink carries and the simulator's cost model charges."""
    return Result.nbytes(dim)


def result_header(out: np.ndarray, it: int, task_id: int, compute_s: float, delay_s: float,
                  loss: float, metric: float) -> None:
    """Fill the header of a RESULT buffer (the gradient is already in ``out[HEADER:]``)."""
    Result.write(out, it=it, task=task_id, compute_s=compute_s, delay_s=delay_s, loss=loss,
                 metric=metric)


def encode_ready(r: Ready) -> np.ndarray:
    out = np.empty(ReadyLayout.HEADER)
    out[:] = r
    return out


def decode_ready(buf: np.ndarray) -> Ready:
    v = buf[:ReadyLayout.HEADER]
    return Ready(int(v[IT]), int(v[TASK]), int(v[ReadyLayout.NBYTES]),
                 *(float(v[getattr(ReadyLayout, f.upper())]) for f in REPORT))


def encode_grant(g: Grant) -> np.ndarray:
    return np.array([g.it, g.task_id, g.offset, g.nbytes, float(g.last)])


def decode_grant(buf: np.ndarray) -> Grant:
    return Grant(int(buf[0]), int(buf[1]), int(buf[2]), int(buf[3]), bool(buf[4]))


def encode_cancel(it: int, task_id: int) -> np.ndarray:
    """CANCEL ``[it, task_id]``; ``task_id = -1``: every task of ``it``."""
    return np.array([it, task_id], dtype=float)


def decode_cancel(buf: np.ndarray) -> tuple[int, int]:
    return int(buf[0]), int(buf[1])


def encode_chunk(it: int, task_id: int, first: int, elements: np.ndarray) -> np.ndarray:
    chunk = np.empty(Chunk.HEADER + len(elements))
    chunk[:Chunk.HEADER] = (it, task_id, first)
    chunk[Chunk.HEADER:] = elements
    return chunk


def encode_model(it: int, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.empty(len(w) + 1) if out is None else out
    out[0] = it
    out[1:] = w
    return out


def chunk_range(offset: int, nbytes: int, last: bool, n_elements: int) -> tuple[int, int]:
    """Elements of a float64 buffer that the byte range [offset, offset + nbytes) carries:
    floor at both ends, and the last chunk runs to the end, so chunks tile the buffer."""
    e0 = offset // 8
    e1 = n_elements if last else min(n_elements, (offset + nbytes) // 8)
    return e0, e1


def encode_task(iteration: int, task, delay: float, n: int | None = None,
                time_limit: float | None = None) -> np.ndarray:
    """A TASK buffer; ``n`` sends only the task's first n partitions (``--delay-mode
    virtual``: the model already decided how many a time limit leaves), ``time_limit`` (None:
    the task's own ``time_limit``, inf if it has none) the compute budget."""
    n = task.n if n is None else int(n)
    has_c = task.coeffs is not None
    if time_limit is None:
        time_limit = getattr(task, "time_limit", math.inf)
    buf = np.empty(Task.HEADER + n * (2 if has_c else 1))
    Task.write(buf, it=iteration, task=task.task_id, stage=task.stage, n=n,
               has_coeffs=float(has_c), delay_s=delay, time_limit_s=time_limit)
    buf[Task.HEADER:Task.HEADER + n] = task.partitions[:n]
    if has_c:
        buf[Task.HEADER + n:] = task.coeffs[:n]
    return buf


def decode_task(buf: np.ndarray) -> dict:
    it, tid, stage, n, has_c, delay, limit = buf[:Task.HEADER]
    n = int(n)
    h = Task.HEADER
    parts = buf[h:h + n].astype(np.int64)
    coeffs = buf[h + n:h + 2 * n] if has_c else None
    return {"it": int(it), "task_id": int(tid), "stage": int(stage), "partitions": parts,
            "coeffs": coeffs, "delay": float(delay), "time_limit": float(limit)}


def encode_partial(it: int, task_id: int, n_done: int) -> np.ndarray:
    """PARTIAL ``[it, task_id, n_done]``: the task's message sums its first n_done
    partitions (its time limit stopped it)."""
    return np.array([it, task_id, n_done], dtype=float)


def decode_partial(buf: np.ndarray) -> tuple[int, int, int]:
    return int(buf[0]), int(buf[1]), int(buf[2])
