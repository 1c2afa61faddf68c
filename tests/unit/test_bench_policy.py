"""``mpicode bench policy``: every registered scheme is either measured or listed with the
reason it could not run (no timing assertions: only the table's completeness and shape)."""

from __future__ import annotations

import pytest

from mpicode import registry
from mpicode.bench import policy
from mpicode.config import UsageError


def test_every_scheme_is_measured_or_says_why(capsys):
    res = policy.run(as_json=True, workers="6,8", budget=60)
    capsys.readouterr()
    for name in registry.schemes():
        for N in (6, 8):
            row = next(r for r in res["rows"] if r["scheme"] == name and r["N"] == N)
            assert "skipped" in row or row["measured_iterations"] >= 1, row
            if "skipped" not in row:
                assert row["us_per_event"] >= 0 and row["ms_per_iteration"] > 0
                assert row["events_per_iteration"] >= 1
    # frc at N = 6 with s = 1 runs (2 | 6); cyclic needs N | K: the default K = 4N is fine
    assert all("skipped" not in r for r in res["rows"]), [r for r in res["rows"]
                                                         if "skipped" in r]
    assert set(res["fits"]) == set(registry.schemes())


def test_a_cell_over_its_budget_is_stopped_and_reported(capsys):
    res = policy.run(as_json=True, workers="64", budget=1e-4)
    capsys.readouterr()
    row = next(r for r in res["rows"] if r["scheme"] == "two-stage")
    assert row.get("over_budget") or row.get("cold_over_budget")
    assert any("two-stage" in n for n in res["notes"])


@pytest.mark.parametrize("bad", ["x", "0", "8,-1", ""])
def test_bad_workers_are_a_usage_error(bad):
    with pytest.raises(UsageError):
        policy.parse_workers(bad if bad else ",")


def test_bad_budget_is_a_usage_error():
    with pytest.raises(UsageError):
        policy.run(as_json=True, workers="8", budget=-1)
