"""Fused numba kernels: one pass over a partition gives its gradient, loss and metric sums.

This module imports nothing of mpicode. Every ``*_pass`` kernel *accumulates*
``scale * gradient-sum`` into ``g`` and returns ``(scale * loss-sum, scale * metric-sum)``
from the same read of the data (a worker forms weighted sums of partitions without a
temporary; rank 0 decodes loss and metric with the gradient's coefficients). Metric: correct
predictions (classifiers), squared errors (regression). ``*_grad`` (older) returns the loss
only; ``*_eval`` returns the unscaled ``(loss-sum, metric)`` without a gradient.

Models (``w`` is always 1-D):

* ``logistic``: labels 0/1, loss ``softplus(x.w) - y x.w``; correct when ``x.w > 0`` iff
  ``y = 1``;
* ``least_squares``: any finite label, loss ``0.5 (x.w - y)^2``; metric ``(x.w - y)^2``;
* ``softmax``: labels 0..C-1, ``w`` is a (d x C) matrix flattened in C order
  (``w[j*C + c]``), loss ``logsumexp(z) - z[y]`` with ``z = x @ W``; correct when the
  arg-max class is ``y``.

Data may be float64 or float32; pass ``w`` in the data's dtype (the dot products then run in
that dtype) and a float64 ``g`` (the accumulation). Per-row link functions run in float64.

The two linear models share one kernel (:func:`_linear_pass`): blocks of rows, their margins
row after row (a sequential stream the hardware prefetcher follows), the links of the whole
block in one vectorized loop (``exp`` and ``log1p`` in arithmetic to 1 ulp, no libm call),
then the update of ``g`` four rows a sweep while the block is still in cache. Evaluation runs
the same pass without the update, so a row's loss and metric are the same bits whether a
worker or rank 0 computes them. See ``mpicode bench kernels``.
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

LOGISTIC = 0
LEAST_SQUARES = 1

# The link functions run without fast-math *reassociation*: exp's range reduction
# (Cody-Waite: a - k ln2_hi - k ln2_lo) is exact only in the order written (reassociated,
# exp loses two digits). Every other fast-math flag is on. They are inlined (numba level)
# into :func:`_links`, compiled with the same flags, whose loop over a block's rows has no
# reduction and therefore vectorizes without reassociation.
_LINK_MATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}
_LN2_HI = 6.93147180369123816490e-01  # ln 2 in 32 bits: k * _LN2_HI is exact for k < 2^21
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00


@intrinsic
def _bits_to_float(typingctx, i):
    """The float64 whose bit pattern is the int64 ``i`` (a vectorizable bitcast)."""
    if not isinstance(i, types.Integer) or i.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(i), codegen


@numba.njit(cache=True, fastmath=_LINK_MATH, error_model="numpy", inline="always")
def _exp_neg(a):
    """``exp(-a)``, ``a >= 0``, to 1 ulp in arithmetic only (a loop over rows vectorizes):
    ``a = k ln2 + r``, ``|r| <= ln2/2``, ``exp(-r)`` a degree-14 Taylor polynomial (remainder
    < 1e-19), ``2^-k`` from the bits of two halves of ``k`` (subnormals right; 0 past 746)."""
    a = min(a, 746.0)
    k = math.floor(a * _INV_LN2 + 0.5)
    x = k * _LN2_LO - (a - k * _LN2_HI)  # = -r
    p = 1.0 + x * (1.0 + x * (1 / 2 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x * (
        1 / 720 + x * (1 / 5040 + x * (1 / 40320 + x * (1 / 362880 + x * (1 / 3628800 + x * (
            1 / 39916800 + x * (1 / 479001600 + x * (1 / 6227020800 + x * (
                1 / 87178291200))))))))))))))
    ki = np.int64(k)
    k1 = ki >> 1
    return (p * _bits_to_float((1023 - k1) << 52)) * _bits_to_float((1023 - ki + k1) << 52)


@numba.njit(cache=True, fastmath=_LINK_MATH, error_model="numpy", inline="always")
def _log1p_unit(e):
    """``log1p(e)`` for ``0 <= e <= 1`` to 1 ulp: ``2 atanh(t)``, ``t = e / (2 + e) <= 1/3``,
    whose odd series in ``t^2 <= 1/9`` is below float64's resolution after 17 terms."""
    t = e / (2.0 + e)
    t2 = t * t
    s = 1.0 / 35.0
    for m in range(33, 0, -2):
        s = s * t2 + 1.0 / m
    return 2.0 * t * s


@numba.njit(cache=True, fastmath=_LINK_MATH, error_model="numpy", inline="always")
def _link(kind, z, y):
    """Per-row (loss, dloss/dz, metric) at margin ``z`` in float64; metric: 1.0 for a correct
    prediction (logistic: the sign of ``z`` matches the label), the squared error (LS)."""
    if kind == LEAST_SQUARES:
        r = z - y
        return 0.5 * r * r, r, r * r
    # logistic: one exp, no branch on the sign of z (random signs mispredict)
    e = _exp_neg(abs(z))
    p = 1.0 / (1.0 + e)
    s = p if z >= 0.0 else e * p
    hit = 1.0 if (z > 0.0) == (y > 0.5) else 0.0
    return max(z, 0.0) + _log1p_unit(e) - y * z, s - y, hit


@numba.njit(cache=True, fastmath=_LINK_MATH, error_model="numpy")
def _links(kind, zb, y, i0, m, scale, lo, rb, hit):
    """The links of rows ``i0 .. i0+m`` from their margins ``zb``: per-row loss into ``lo``,
    ``scale * dloss/dz`` into ``rb`` (the data dtype), metric into ``hit``."""
    for q in range(m):
        lq, s, h = _link(kind, zb[q], float(y[i0 + q]))
        lo[q] = lq
        rb[q] = scale * s
        hit[q] = h


@numba.njit(cache=True, fastmath=True)
def _dot(X, w, i):
    """Margin of row i in the data dtype."""
    z = w[0] - w[0]  # a zero of the data dtype
    for j in range(X.shape[1]):
        z += X[i, j] * w[j]
    return z


@numba.njit(cache=True, fastmath=True)
def _dots4(X, w, i0, i1, i2, i3):
    """Margins of rows i0..i3 in the data dtype, in one sweep (``w[j]`` read once)."""
    z0 = z1 = z2 = z3 = w[0] - w[0]
    for j in range(X.shape[1]):
        wj = w[j]
        z0 += X[i0, j] * wj
        z1 += X[i1, j] * wj
        z2 += X[i2, j] * wj
        z3 += X[i3, j] * wj
    return z0, z1, z2, z3


WIDE_ROW_BYTES = 16384  # rows at least this long: margins four rows a sweep (see _linear_pass)


@numba.njit(cache=True, fastmath=True)
def _margins(X, w, i0, m, zb):
    """Margins of rows ``i0 .. i0+m`` into ``zb`` (see :func:`_linear_pass`)."""
    last = X.shape[0] - 1
    if X.shape[1] * X.itemsize >= WIDE_ROW_BYTES:
        for q in range(0, m, 4):
            i = i0 + q
            z0, z1, z2, z3 = _dots4(X, w, i, min(i + 1, last), min(i + 2, last),
                                    min(i + 3, last))
            zb[q] = z0
            zb[q + 1] = z1
            zb[q + 2] = z2
            zb[q + 3] = z3
    else:
        for q in range(m):
            zb[q] = _dot(X, w, i0 + q)


@numba.njit(cache=True, fastmath=True)
def _update(X, rb, i0, m, acc):
    """``acc += X[i0:i0+m].T @ rb[:m]``, four rows a sweep."""
    d = X.shape[1]
    q = 0
    while q + 4 <= m:
        i = i0 + q
        r0 = rb[q]
        r1 = rb[q + 1]
        r2 = rb[q + 2]
        r3 = rb[q + 3]
        for j in range(d):
            acc[j] += r0 * X[i, j] + r1 * X[i + 1, j] + r2 * X[i + 2, j] + r3 * X[i + 3, j]
        q += 4
    while q < m:  # the m % 4 last rows
        r0 = rb[q]
        for j in range(d):
            acc[j] += r0 * X[i0 + q, j]
        q += 1


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _linear_pass(X, y, w, g, acc, flush, scale, kind, grad):
    """One pass over the rows of ``X`` in blocks (see the module docstring); returns the
    unscaled (loss sum, metric sum). ``acc`` is ``g`` itself (``flush`` False: float64 data)
    or a zeroed data-dtype d-vector added into ``g`` after every block (float32: the update
    at float32's SIMD width, the sum across blocks in float64). Margins row after row, four
    rows a sweep only for rows of :data:`WIDE_ROW_BYTES` or more: measured on AMD Zen 4, four
    rows a sweep on 500-wide rows, or software prefetches, cost 1.5-2x the plain stream.
    The choice depends on the width only: a row's margin is the same bits in every pass."""
    n, d = X.shape
    R = 16 if d * X.itemsize < 2048 else 32  # rows per block (measured: 50 and 500 wide)
    zb = np.empty(R)
    lo = np.empty(R)
    hit = np.empty(R)
    rb = np.empty(R, X.dtype)
    loss = 0.0
    metric = 0.0
    for i0 in range(0, n, R):
        m = min(R, n - i0)
        _margins(X, w, i0, m, zb)
        _links(kind, zb, y, i0, m, scale, lo, rb, hit)
        lb = 0.0
        mb = 0.0
        for q in range(m):
            lb += lo[q]
            mb += hit[q]
        loss += lb
        metric += mb
        if grad:
            _update(X, rb, i0, m, acc)
            if flush:
                for j in range(d):
                    g[j] += acc[j]
                    acc[j] = 0.0
    return loss, metric


@numba.njit(cache=True, fastmath=True)
def _linear(X, y, w, g, scale, kind):
    """(scale * loss sum, scale * metric sum), ``g += scale * gradient sum``."""
    if X.itemsize == 4:
        acc = np.zeros(X.shape[1], X.dtype)
        loss, metric = _linear_pass(X, y, w, g, acc, True, scale, kind, True)
    else:
        loss, metric = _linear_pass(X, y, w, g, g, False, scale, kind, True)
    return scale * loss, scale * metric


@numba.njit(cache=True, fastmath=True)
def logistic_pass(X, y, w, g, scale):
    """Binary logistic (labels 0/1): ``g += scale * X.T @ (sigmoid(X @ w) - y)`` and, from
    the same read of ``X``, ``(scale * loss sum, scale * correct predictions)`` with loss
    ``softplus(x.w) - y x.w`` and a prediction correct when ``x.w > 0`` iff ``y = 1``."""
    return _linear(X, y, w, g, scale, LOGISTIC)


@numba.njit(cache=True, fastmath=True)
def least_squares_pass(X, y, w, g, scale):
    """Least squares: ``g += scale * X.T @ (X @ w - y)``; returns ``(scale * sum(0.5 *
    (X @ w - y)**2), scale * sum((X @ w - y)**2))``."""
    return _linear(X, y, w, g, scale, LEAST_SQUARES)


@numba.njit(cache=True, fastmath=True)
def logistic_grad(X, y, w, g, scale):
    """:func:`logistic_pass` returning ``scale * loss sum`` only (the older signature)."""
    return _linear(X, y, w, g, scale, LOGISTIC)[0]


@numba.njit(cache=True, fastmath=True)
def least_squares_grad(X, y, w, g, scale):
    """:func:`least_squares_pass` returning ``scale * loss sum`` only (the older signature)."""
    return _linear(X, y, w, g, scale, LEAST_SQUARES)[0]


@numba.njit(cache=True, fastmath=True)
def _linear_eval(X, y, w, kind):
    """(loss sum, metric sum): the pass without the gradient, so every row's margin, loss
    and metric are the very values a worker's pass computes."""
    g = np.zeros(0)
    return _linear_pass(X, y, w, g, g, False, 1.0, kind, False)


@numba.njit(cache=True, fastmath=True)
def logistic_eval(X, y, w):
    """Loss sum and number of correct predictions (threshold 0.5) over rows of ``X``."""
    loss, correct = _linear_eval(X, y, w, LOGISTIC)
    return loss, int(correct)


@numba.njit(cache=True, fastmath=True)
def least_squares_eval(X, y, w):
    """Loss sum (``0.5 * sse``) and the sum of squared errors ``sse`` over rows of ``X``."""
    return _linear_eval(X, y, w, LEAST_SQUARES)


@numba.njit(cache=True, fastmath=True)
def _softmax_row(X, i, w, C, z):
    """Logits of row i into ``z`` (float64); returns logsumexp(z)."""
    d = X.shape[1]
    for c in range(C):
        z[c] = 0.0
    for j in range(d):
        xj = float(X[i, j])
        base = j * C
        for c in range(C):
            z[c] += xj * w[base + c]
    m = z[0]
    for c in range(1, C):
        m = max(m, z[c])
    s = 0.0
    for c in range(C):
        z[c] -= m  # stable: every exponent <= 0
        s += math.exp(z[c])
    return math.log(s)


@numba.njit(cache=True, fastmath=True)
def _argmax(z, C):  # the first largest
    best = 0
    for c in range(1, C):
        if z[c] > z[best]:
            best = c
    return best


@numba.njit(cache=True, fastmath=True)
def softmax_pass(X, y, w, g, scale):
    """Multinomial logistic (softmax, labels 0..C-1): loss, metric and gradient sums in one
    pass.

    ``w`` and ``g`` are a (d x C) matrix W flattened in C order. With ``z = X @ W`` and
    ``P = softmax(z)`` row-wise, ``g += scale * X.T @ (P - onehot(y))``; returns
    ``(scale * sum(logsumexp(z) - z[y]), scale * correct predictions)`` (arg-max class).
    """
    n, d = X.shape
    C = w.shape[0] // d
    z = np.empty(C)
    r = np.empty(C)
    loss = 0.0
    correct = 0.0
    for i in range(n):
        lse = _softmax_row(X, i, w, C, z)
        yi = int(y[i])
        loss += lse - z[yi]
        if _argmax(z, C) == yi:
            correct += 1.0
        for c in range(C):
            r[c] = scale * math.exp(z[c] - lse)
        r[yi] -= scale
        for j in range(d):
            xj = float(X[i, j])
            base = j * C
            for c in range(C):
                g[base + c] += r[c] * xj
    return scale * loss, scale * correct


@numba.njit(cache=True, fastmath=True)
def softmax_grad(X, y, w, g, scale):
    """:func:`softmax_pass` returning ``scale * loss sum`` only (the older signature)."""
    return softmax_pass(X, y, w, g, scale)[0]


@numba.njit(cache=True, fastmath=True)
def softmax_eval(X, y, w):
    """Loss sum and number of correct predictions (arg-max class) over rows of ``X``."""
    n, d = X.shape
    C = w.shape[0] // d
    z = np.empty(C)
    loss = 0.0
    correct = 0
    for i in range(n):
        lse = _softmax_row(X, i, w, C, z)
        yi = int(y[i])
        loss += lse - z[yi]
        if _argmax(z, C) == yi:
            correct += 1
    return loss, correct


@numba.njit(cache=True, fastmath=True)
def read_once(X):
    """Sum of ``X`` in one sequential pass: the memory-bandwidth floor of any kernel on X."""
    n, d = X.shape
    s = 0.0
    for i in range(n):
        t = X[i, 0] - X[i, 0]  # row sums in the data dtype (full SIMD width)
        for j in range(d):
            t += X[i, j]
        s += t
    return s


PASS = {"logistic": logistic_pass, "softmax": softmax_pass, "least-squares": least_squares_pass}
GRAD = {"logistic": logistic_grad, "softmax": softmax_grad, "least-squares": least_squares_grad}
EVAL = {"logistic": logistic_eval, "softmax": softmax_eval, "least-squares": least_squares_eval}


def warmup():
    """Compile every kernel for float64 and float32 data (and fill numba's on-disk cache)."""
    for dt in (np.float64, np.float32):
        X = np.zeros((5, 3), dt)
        y = np.zeros(5, dt)
        w = np.zeros(3, dt)
        g = np.zeros(3)
        logistic_pass(X, y, w, g, 1.0)
        least_squares_pass(X, y, w, g, 1.0)
        logistic_grad(X, y, w, g, 1.0)
        least_squares_grad(X, y, w, g, 1.0)
        logistic_eval(X, y, w)
        least_squares_eval(X, y, w)
        read_once(X)
        wc = np.zeros(6, dt)
        gc = np.zeros(6)
        softmax_pass(X, y, wc, gc, 1.0)
        softmax_grad(X, y, wc, gc, 1.0)
        softmax_eval(X, y, wc)
