"""The simulator (serial twin of the MPI runtime), virtual clock, traces, reproducibility."""

import pytest

from mpicode.engine.vworkers import VirtualWorkers

pytestmark = pytest.mark.timeout(300)


def test_virtual_workers_run_tasks_in_order_and_cancel_frees():
    vw = VirtualWorkers(2)
    vw.add(0, 1, 0.0, 3.0)
    vw.add(0, 2, 0.0, 1.0)   # queued behind task 1: finishes at 4
    vw.add(1, 3, 0.5, 1.0)   # finishes at 1.5
    assert vw.peek() == (1.5, 3)
    assert vw.pop() == (1.5, 3)
    vw.cancel(1, 2.0)        # running task cut at 2.0: task 2 now finishes at 3.0
    assert vw.pop() == (3.0, 2)
    assert vw.peek() is None
    vw.add(1, 4, 5.0, 1.0)
    vw.add(1, 5, 5.0, 2.0)
    vw.cancel(4, 5.0)        # cancelling the head at dispatch time: 5 starts at 5.0
    assert vw.pop() == (7.0, 5)


