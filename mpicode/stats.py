"""Small statistics shared by the policies' benchmarks, the analysis and the experiments (pure).

* :func:`jain`: Jain's fairness index, one definition everywhere (NaN when there is nothing to
  share: an empty vector, or all zeros, has no fairness to speak of).
* :func:`mean_ci`: mean and a two-sided 95% Student-t confidence interval.
"""

from __future__ import annotations

import math

import numpy as np

# two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30 (beyond: the normal's 1.96)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def jain(x) -> float:
    """Jain's fairness index (sum x)^2 / (n * sum x^2) over the finite entries: 1 when all
    are equal, 1/n when one has everything, NaN when there is nothing to share."""
    x = np.asarray(x, float).ravel()
    x = x[np.isfinite(x)]
    s2 = float(np.sum(x * x))
    return float(np.sum(x) ** 2 / (len(x) * s2)) if len(x) and s2 > 0 else math.nan


def t975(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


def mean_ci(x) -> tuple[float, float, float]:
    """(mean, low, high) of the finite entries: the 95% Student-t interval of the mean (a
    single value has the degenerate interval [x, x]; none gives NaNs)."""
    x = np.asarray(x, float).ravel()
    x = x[np.isfinite(x)]
    if not len(x):
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if len(x) == 1:
        return m, m, m
    h = t975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return m, m - h, m + h


def ci_dict(x) -> dict:
    """:func:`mean_ci` as ``{"mean", "lo", "hi"}`` (the experiments' JSON form)."""
    m, lo, hi = mean_ci(x)
    return {"mean": m, "lo": lo, "hi": hi}
