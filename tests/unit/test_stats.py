"""The shared statistics: one Jain index, Student-t confidence intervals."""

import math

import numpy as np

from mpicode.stats import jain, mean_ci, t975


def test_jain_one_definition():
    assert jain([2, 2, 2]) == 1.0 and jain([3, 0, 0]) == 1 / 3
    assert math.isnan(jain([])) and math.isnan(jain([0, 0])) and jain([1, np.nan, 1]) == 1.0


def test_mean_ci_covers_the_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(2000):
        x = rng.normal(3.0, 2.0, size=5)
        _, lo, hi = mean_ci(x)
        hits += lo <= 3.0 <= hi
    assert 0.93 < hits / 2000 < 0.97
    assert mean_ci([4.0]) == (4.0, 4.0, 4.0) and all(map(math.isnan, mean_ci([])))
    assert t975(4) == 2.776 and t975(1000) == 1.96
