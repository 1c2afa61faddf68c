"""The live schemes make exactly the recorded decisions (tests/data/decisions/).

Every recorded input of the corpus (:mod:`decision_corpus`: seeded simulations of every
built-in scheme through the real simulator path, and drawn completion orders through
``schemes/replay.py``) is replayed through the live code and its decisions compared bit for
bit: every task (id, worker, stage, partitions, coefficients, dispatch and end times,
duration, state, use), the log notes, the iteration's row and run-log columns (simulations),
the arrivals, ticks and summary (replays), and the final ``state_dict()``. An index or a
restructuring of a scheme must leave all of it unchanged; a change meant to alter decisions
re-records the corpus (``python tests/unit/decision_corpus.py``) in a commit of its own.
"""

from __future__ import annotations

import pytest
from decision_corpus import FILES, differences, load, name_of, run_case


def _cases():
    for name in FILES:
        for i, case in enumerate(load(name)):
            yield pytest.param(case, id=f"{name}-{i}")


@pytest.mark.parametrize("case", list(_cases()))
def test_live_decisions_equal_the_recorded_ones(case):
    diff = differences(case["result"], run_case(case))
    assert not diff, f"{name_of(case)}:\n  " + "\n  ".join(diff)


def test_the_corpus_covers_what_it_claims():
    """Stealing, re-planning, stage 2 by either trigger, partial decodes, backups and cancels
    all happen somewhere in the corpus (else it would guard nothing there)."""
    seen = set()
    for name in FILES:
        for case in load(name):
            for it in case["result"]["iterations"]:
                r = it.get("row") or it.get("summary")
                seen.update(f"{case['scheme']}:{k}" for k in ("replans", "steals", "stage2",
                                                             "expired", "n_stage2")
                            if r.get(k))
                if r.get("trigger"):
                    seen.add(f"two-stage:trigger={r['trigger']}")
                if "c" in it["tasks"]["state"]:
                    seen.add(f"{case['scheme']}:cancel")
    for want in ("two-stage:replans", "two-stage:steals", "two-stage:stage2",
                 "two-stage:expired", "two-stage:trigger=count", "two-stage:trigger=deadline",
                 "self-scheduling:n_stage2", "self-scheduling:cancel", "frc:cancel",
                 "cyclic:cancel", "ignore-stragglers:cancel"):
        assert want in seen, want
