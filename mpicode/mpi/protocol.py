"""The wire protocol between rank 0 and the workers: tags, header layouts, encode/decode.

Pure (no MPI): unit-tested serially. Every message is a float64 buffer whose first element is
the iteration number; nothing on the hot path is pickled.

* ``MODEL``  0 -> i: ``[it, w...]`` at the start of iteration ``it``.
* ``TASK``   0 -> i: ``[it, task_id, stage, n, has_coeffs, delay_s, p_1..p_n, c_1..c_n]``.
* ``CANCEL`` 0 -> i: ``[it, task_id]`` (``task_id = -1``: every task of ``it``).
* ``RESULT`` i -> 0: ``[it, task_id, compute_s, delay_s, loss, g...]`` (``ideal`` channel).
* With an emulated uplink (``--channel`` not ideal) a finished task is announced instead:
  ``READY`` i -> 0 ``[it, task_id, nbytes, compute_s, delay_s, loss]``; rank 0 runs the slot
  clock and the scheduler and answers ``GRANT`` 0 -> i ``[it, task_id, offset, nbytes,
  last]``; the worker sends exactly that byte range of its RESULT buffer as ``CHUNK`` i -> 0
  ``[it, task_id, first_element, elements...]``. A result counts as arrived when its last
  chunk is here and the slot that carried it has ended.
* ``STOP``   0 -> i: ``[-1]``; the worker waits for its sends, answers ``ACK`` and returns.
"""

from __future__ import annotations

import numpy as np

TAG_MODEL, TAG_TASK, TAG_CANCEL, TAG_STOP, TAG_RESULT, TAG_ACK = range(11, 17)
TAG_READY, TAG_GRANT, TAG_CHUNK = range(17, 20)
RESULT_HEADER = 5
TASK_HEADER = 6
CHUNK_HEADER = 3


def chunk_range(offset: int, nbytes: int, last: bool, n_elements: int) -> tuple[int, int]:
    """Elements of a float64 buffer that the byte range [offset, offset + nbytes) carries:
    floor at both ends, and the last chunk runs to the end, so chunks tile the buffer."""
    e0 = offset // 8
    e1 = n_elements if last else min(n_elements, (offset + nbytes) // 8)
    return e0, e1

def encode_task(iteration: int, task, delay: float) -> np.ndarray:
    n = task.n
    has_c = task.coeffs is not None
    buf = np.empty(TASK_HEADER + n * (2 if has_c else 1))
    buf[:TASK_HEADER] = (iteration, task.task_id, task.stage, n, float(has_c), delay)
    buf[TASK_HEADER:TASK_HEADER + n] = task.partitions
    if has_c:
        buf[TASK_HEADER + n:] = task.coeffs
    return buf


def decode_task(buf: np.ndarray) -> dict:
    it, tid, stage, n, has_c, delay = buf[:TASK_HEADER]
    n = int(n)
    parts = buf[TASK_HEADER:TASK_HEADER + n].astype(np.int64)
    coeffs = buf[TASK_HEADER + n:TASK_HEADER + 2 * n] if has_c else None
    return {"it": int(it), "task_id": int(tid), "stage": int(stage), "partitions": parts,
            "coeffs": coeffs, "delay": float(delay)}


