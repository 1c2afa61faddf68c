"""The wire protocol, serially: every message round-trips through its named fields."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from mpicode import wire as p
from mpicode.schemes.base import Task


def test_task_round_trip_with_and_without_coefficients():
    for coeffs in (None, np.array([0.5, -2.0, 3.25])):
        t = Task(7, 2, 2, np.array([4, 9, 11]), coeffs)
        d = p.decode_task(p.encode_task(13, t, 0.125))
        assert (d["it"], d["task_id"], d["stage"], d["delay"]) == (13, 7, 2, 0.125)
        np.testing.assert_array_equal(d["partitions"], [4, 9, 11])
        assert (d["coeffs"] is None) == (coeffs is None)
        if coeffs is not None:
            np.testing.assert_array_equal(d["coeffs"], coeffs)


def test_result_ready_grant_cancel_model_fields():
    out = np.zeros(p.Result.HEADER + 3)
    p.result_header(out, 5, 8, 0.25, 0.5, 1.75, 3.0)
    assert out[p.IT] == 5 and out[p.TASK] == 8 and out[p.Result.LOSS] == 1.75
    assert out[p.Result.COMPUTE_S] == 0.25 and out[p.Result.DELAY_S] == 0.5
    assert out[p.Result.METRIC] == 3.0 and p.Result.HEADER == 6
    r = p.Ready(3, 4, 4096, 0.1, 0.2, 9.5, 7.0)
    assert p.decode_ready(p.encode_ready(r)) == r
    assert p.encode_ready(r)[p.ReadyLayout.METRIC] == 7.0
    g = p.Grant(3, 4, 800, 1600, True)
    assert p.decode_grant(p.encode_grant(g)) == g
    assert p.decode_cancel(p.encode_cancel(6, -1)) == (6, -1)
    m = p.encode_model(9, np.array([1.0, 2.0]))
    assert m[p.IT] == 9 and list(m[1:]) == [1.0, 2.0]
    c = p.encode_chunk(2, 3, 10, np.arange(4.0))
    assert c[p.Chunk.FIRST] == 10 and list(c[p.Chunk.HEADER:]) == [0, 1, 2, 3]


@given(n=st.integers(1, 300), cuts=st.lists(st.integers(1, 900), min_size=0, max_size=8))
def test_chunks_tile_the_buffer(n, cuts):
    """Granted byte ranges, however cut, carry every element exactly once."""
    nbytes, offset, seen = 8 * n, 0, []
    for c in cuts:
        if offset + c >= nbytes:
            break
        e0, e1 = p.chunk_range(offset, c, False, n)
        seen += range(e0, e1)
        offset += c
    e0, e1 = p.chunk_range(offset, nbytes - offset, True, n)
    seen += range(e0, e1)
    assert seen == list(range(n))


def test_result_and_ready_report_the_same_fields_from_one_definition():
    """RESULT's header and READY carry the worker's report (compute_s, delay_s, loss, metric)
    from one tuple, so the two cannot drift apart; the simulator sizes messages from it."""
    assert p.Result.fields == ("it", "task") + p.REPORT
    assert p.ReadyLayout.fields == ("it", "task", "nbytes") + p.REPORT
    assert p.Ready._fields[3:] == p.REPORT and len(p.Ready._fields) == p.ReadyLayout.HEADER
    assert p.result_bytes(10) == 8 * (len(p.REPORT) + 2 + 10)


def test_the_old_module_name_still_imports_every_name():
    from mpicode.mpi import protocol
    for name in ("Result", "ReadyLayout", "REPORT", "Ready", "RESULT_HEADER", "TAG_READY",
                 "decode_ready", "result_bytes"):
        assert getattr(protocol, name) is getattr(p, name)
