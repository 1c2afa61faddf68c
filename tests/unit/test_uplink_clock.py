"""The uplink's slot clock when rank 0 runs late (wall clock): an offer that arrives while
the clock is behind reaches the scheduler at the first slot that begins at or after it, as
in virtual time, and a cancel or the iteration's end forgets it."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpicode.engine.uplink import Uplink
from mpicode.models.channels import Constant
from mpicode.schedulers import Lyapunov, MaxWeight


def _uplink(cls=MaxWeight):
    # worker 1 has the better link: max-weight would serve it first
    return Uplink(cls(2, Constant(2, [100.0, 1000.0])), slot_s=1.0)


def _run(up, until=math.inf):
    """Step every due slot (as the event loop does once it wakes); (slot, grants)."""
    out = []
    while up.next_slot_time() < until:
        s = up.next_slot
        out.append((s, up.step()))
    return out


def test_a_late_offer_is_not_granted_slots_that_began_before_it():
    up = _uplink()
    up.new_iteration(0)
    up.offer(0, (0, 0), 1000, t=0.0)          # ten slots of worker 0
    up.offer(1, (0, 1), 500, t=5.5)           # rank 0 wakes at 5.5, the clock still at 0
    slots = _run(up)
    first = min(s for s, gs in slots for g in gs if g.worker == 1)
    assert first == 6                          # the first slot that begins at or after 5.5
    # the slots before it were worker 0's: its capacity was not lost
    assert sum(g.nbytes for s, gs in slots if s < 6 for g in gs if g.worker == 0) == 600


def test_an_on_time_offer_goes_straight_in():
    up = _uplink()
    up.offer(0, (0, 0), 1000, t=0.0)
    _run(up, until=3.0)                        # slots 0, 1, 2 ran on time
    up.offer(1, (0, 1), 500, t=2.5)           # before the next slot (3) begins
    assert not up.pending and up.sched.waiting()
    assert any(g.worker == 1 and g.nbytes == 500 for g in up.step())  # all of it in slot 3


def test_pending_offers_are_dropped_with_their_task_or_iteration():
    up = _uplink(Lyapunov)
    up.new_iteration(0)
    up.offer(0, (0, 0), 1000, t=0.0)
    up.offer(1, (0, 1), 500, t=5.5)
    up.offer(1, (0, 2), 500, t=6.5)
    up.drop({(0, 1)})
    assert [p[3] for p in up.pending] == [(0, 2)]
    up.drop_iteration(0)
    assert not up.pending and not up.sched.waiting()


def test_an_idle_link_takes_the_pending_offer_at_its_time():
    up = _uplink()
    up.offer(0, (0, 0), 100, t=0.0)           # one slot
    up.offer(1, (0, 1), 1000, t=4.2)          # the clock is at 0: pending
    slots = _run(up)
    assert [s for s, gs in slots if gs] == [0, 5]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(1, 3000), st.floats(0, 30)),
                min_size=1, max_size=12))
def test_no_grant_before_its_offer(offers):
    """Offers in time order, the clock run only at the end: every grant of a message is in
    a slot that begins at or after its offer time."""
    up = _uplink()
    up.new_iteration(0)
    when = {}
    for k, (w, n, t) in enumerate(sorted(offers, key=lambda o: o[2])):
        up.offer(w, (0, k), n, t=t)
        when[(0, k)] = t
    for s, gs in _run(up):
        for g in gs:
            assert s * up.slot_s >= when[g.msg_id] - 1e-9
    assert sum(up.sched.delivered) == sum(n for _, n, _ in offers)


@pytest.mark.parametrize("cls", [MaxWeight, Lyapunov])
def test_virtual_time_order_is_unchanged(cls):
    """When every due slot runs before a later offer (virtual time), nothing waits."""
    up = _uplink(cls)
    up.offer(0, (0, 0), 1000, t=0.0)
    _run(up, until=4.0)
    up.offer(1, (0, 1), 500, t=4.0)
    assert not up.pending


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 50)), min_size=6, max_size=6),
       st.sampled_from(["tdma", "ofdma"]), st.sampled_from(["bytes", "airtime"]))
def test_lyapunov_fast_order_is_the_design_order(qr, access, weights):
    """theta = 0: the one-sort order equals positive weights first, then the rest by Q*R."""
    import numpy as np
    s = Lyapunov(6, Constant(6, [5.0, 50.0, 500.0, 5.0, 50.0, 500.0]), access=access,
                 queue_weights=weights)
    s.Q = np.array([float(q) * 100 for q, _ in qr])
    R = np.array([r if r > 1 else 0.0 for _, r in qr])
    w = np.where(s.Q > 0, s.c * s.Q * R, 0.0)
    pos = [int(i) for i in np.flatnonzero(w > 0)[np.argsort(-w[w > 0], kind="stable")]]
    rest = [int(i) for i in np.flatnonzero((s.Q > 0) & (w <= 0))]
    order, k = s._order(R)
    if not (s.Q > 0).any():
        assert order == []
        return
    assert order == pos + rest
    assert k == (1 if access == "tdma" else (min(s.m, len(pos)) if pos else s.m))
