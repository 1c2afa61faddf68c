"""Fused numba kernels: one pass over a partition gives its loss sum and gradient sum.

This module imports nothing of mpicode. Every ``*_grad`` kernel *accumulates*
``scale * gradient-sum`` into ``g`` and returns ``scale * loss-sum``, so a worker can form a
weighted sum of partitions (cyclic codes) without a temporary. Every ``*_eval`` kernel returns
``(loss-sum, metric)``: the number of correct predictions for classifiers, the sum of squared
errors for regression.

Models (``w`` is always 1-D):

* ``logistic``: labels 0/1, loss ``softplus(x.w) - y x.w``;
* ``least_squares``: any finite label, loss ``0.5 (x.w - y)^2``;
* ``softmax``: labels 0..C-1, ``w`` is a (d x C) matrix flattened in C order
  (``w[j*C + c]``), loss ``logsumexp(z) - z[y]`` with ``z = x @ W``.

Data may be float64 or float32; pass ``w`` in the data's dtype (the dot products then run in
that dtype) and a float64 ``g`` (the accumulation). Per-row link functions run in float64
(for float32 data as a vectorized polynomial, see :func:`_linear_grad32`).

The two linear models share one kernel that handles four rows per sweep: four dot products
share each read of ``w``, then one sweep updates ``g`` from the four rows while they are still
in L1. After the dot products of a block it issues software prefetches for the block two
ahead, so DRAM keeps streaming while the core does the per-row ``exp``/``log1p`` and the update
(without them the hardware prefetcher idles during that work: ~1.9x the read-once floor
instead of ~1.4x on 20000x500 float64). See ``mpicode bench kernels``.
"""

import math

import numba
import numpy as np
from llvmlite import binding as _llvm
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

LOGISTIC = 0
LEAST_SQUARES = 1

# LLVM >= 15 mangles the prefetch intrinsic on the (opaque) pointer type "p0"
_PREFETCH = "llvm.prefetch.p0" if _llvm.llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Prefetch hint for the cache line of flat element ``idx`` of a C-contiguous array."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        ary = context.make_array(arr)(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _PREFETCH)
        # read, high temporal locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, fastmath=True, inline="always")
def _link(kind, z, y):
    """Per-row (loss, dloss/dz) of a linear model at margin ``z`` (float64)."""
    if kind == LEAST_SQUARES:
        r = z - y
        return 0.5 * r * r, r
    # logistic: one exp, no branch on the sign of z (random signs mispredict)
    e = math.exp(-abs(z))
    p = 1.0 / (1.0 + e)
    s = p if z >= 0.0 else e * p
    return max(z, 0.0) + math.log1p(e) - y * z, s - y


@numba.njit(cache=True, fastmath=True)
def _linear_grad(X, y, w, g, scale, kind):
    n, d = X.shape
    total = n * d
    step = max(1, 64 // X.itemsize)  # elements per cache line
    acc = np.zeros(4, X.dtype)  # dot products in the data dtype
    rr = np.zeros(4, X.dtype)
    loss = 0.0
    i = 0
    while i + 4 <= n:
        z0 = acc[0]
        z1 = acc[1]
        z2 = acc[2]
        z3 = acc[3]
        for j in range(d):
            wj = w[j]
            z0 += X[i, j] * wj
            z1 += X[i + 1, j] * wj
            z2 += X[i + 2, j] * wj
            z3 += X[i + 3, j] * wj
        # keep DRAM busy during the scalar work and the update below
        a = (i + 8) * d
        b = min(a + 4 * d, total)
        for q in range(a, b, step):
            _prefetch(X, q)
        l0, s0 = _link(kind, float(z0), float(y[i]))
        l1, s1 = _link(kind, float(z1), float(y[i + 1]))
        l2, s2 = _link(kind, float(z2), float(y[i + 2]))
        l3, s3 = _link(kind, float(z3), float(y[i + 3]))
        loss += (l0 + l1) + (l2 + l3)
        rr[0] = scale * s0
        rr[1] = scale * s1
        rr[2] = scale * s2
        rr[3] = scale * s3
        r0 = rr[0]
        r1 = rr[1]
        r2 = rr[2]
        r3 = rr[3]
        for j in range(d):
            g[j] += r0 * X[i, j] + r1 * X[i + 1, j] + r2 * X[i + 2, j] + r3 * X[i + 3, j]
        i += 4
    while i < n:  # the n % 4 remaining rows
        z = acc[0]
        for j in range(d):
            z += X[i, j] * w[j]
        lo, s = _link(kind, float(z), float(y[i]))
        loss += lo
        rr[0] = scale * s
        r = rr[0]
        for j in range(d):
            g[j] += r * X[i, j]
        i += 1
    return scale * loss


@numba.njit(cache=True, fastmath=True, inline="always", error_model="numpy")
def _link_poly(kind, z, y):
    """``_link`` in arithmetic only (no libm call), so a loop over rows vectorizes; for
    float32 data: relative error < 2e-10 for |z| < 100 and < 4e-8 beyond (where
    exp(-|z|) < 1e-43), below float32's 6e-8. exp(-a) is a degree-12 Taylor polynomial at
    -a/1024 squared ten times (a clamped to 708); log1p(e) = 2 atanh(e / (2 + e))."""
    if kind == LEAST_SQUARES:
        r = z - y
        return 0.5 * r * r, r
    x = -min(abs(z), 708.0) * (1.0 / 1024.0)
    e = 1.0 + x * (1.0 + x * (1 / 2 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x * (
        1 / 720 + x * (1 / 5040 + x * (1 / 40320 + x * (1 / 362880 + x * (
            1 / 3628800 + x * (1 / 39916800 + x * (1 / 479001600))))))))))))
    for _ in range(10):
        e *= e
    t = e / (2.0 + e)
    t2 = t * t
    lg = 2.0 * t * (1.0 + t2 * (1 / 3 + t2 * (1 / 5 + t2 * (1 / 7 + t2 * (1 / 9 + t2 * (
        1 / 11 + t2 * (1 / 13 + t2 * (1 / 15 + t2 * (1 / 17)))))))))
    p = 1.0 / (1.0 + e)
    s = p if z >= 0.0 else e * p
    return max(z, 0.0) + lg - y * z, s - y


R32 = 16  # rows per block of the float32 kernel: the link loop fills a 512-bit vector


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _linear_grad32(X, y, w, g, scale, kind):
    """The float32 kernel. In float32 the dot products are so cheap that libm's per-row
    exp/log1p dominated (numpy was faster on 100000x50), so: blocks of R32 rows, dot
    products four rows per sweep into ``zb``, then the links of the whole block in one
    vectorized loop (:func:`_link_poly`; ``error_model="numpy"`` drops the division-by-zero
    branch that would stop the vectorizer), then the update, summed in float32 within the
    block and added to the float64 ``g`` once per block. Prefetching the next block helps
    only at mid widths (measured: +20% at d=500, -5..15% at d=50 and d=5000)."""
    n, d = X.shape
    R = R32
    total = n * d
    prefetch = 128 <= d <= 2048
    zb = np.empty(R)
    rb = np.empty(R, X.dtype)
    gb = np.zeros(d, X.dtype)
    loss = 0.0
    i0 = 0
    while i0 + R <= n:
        for q in range(0, R, 4):
            i = i0 + q
            z0 = X[0, 0] - X[0, 0]  # a zero of the data dtype
            z1 = z0
            z2 = z0
            z3 = z0
            for j in range(d):
                wj = w[j]
                z0 += X[i, j] * wj
                z1 += X[i + 1, j] * wj
                z2 += X[i + 2, j] * wj
                z3 += X[i + 3, j] * wj
            zb[q] = z0
            zb[q + 1] = z1
            zb[q + 2] = z2
            zb[q + 3] = z3
        if prefetch:
            a = (i0 + 2 * R) * d
            for k in range(a, min(a + R * d, total), 16):
                _prefetch(X, k)
        lsum = 0.0
        # a trip count LLVM cannot see (it is R): a constant one gets the loop fully
        # unrolled and then not vectorized (measured 2x slower)
        for r in range(min(R, n - i0)):
            lo, s = _link_poly(kind, zb[r], float(y[i0 + r]))
            lsum += lo
            rb[r] = scale * s
        loss += lsum
        for q in range(0, R, 4):
            i = i0 + q
            r0 = rb[q]
            r1 = rb[q + 1]
            r2 = rb[q + 2]
            r3 = rb[q + 3]
            for j in range(d):
                gb[j] += r0 * X[i, j] + r1 * X[i + 1, j] + r2 * X[i + 2, j] + r3 * X[i + 3, j]
        for j in range(d):
            g[j] += gb[j]
            gb[j] = 0.0
        i0 += R
    return scale * (loss + _rows_one_by_one(X, y, w, g, scale, kind, i0))


@numba.njit(cache=True, fastmath=True, inline="always")
def _rows_one_by_one(X, y, w, g, scale, kind, i0):
    """Rows ``i0:`` one at a time (the n % R32 last rows of the float32 kernel)."""
    loss = 0.0
    for i in range(i0, X.shape[0]):
        z = X[0, 0] - X[0, 0]
        for j in range(X.shape[1]):
            z += X[i, j] * w[j]
        lo, s = _link(kind, float(z), float(y[i]))
        loss += lo
        r = scale * s
        for j in range(X.shape[1]):
            g[j] += r * X[i, j]
    return loss


@numba.njit(cache=True, fastmath=True)
def _linear_eval(X, y, w, kind):
    n, d = X.shape
    loss = 0.0
    metric = 0.0
    for i in range(n):
        z = 0.0
        for j in range(d):
            z += X[i, j] * w[j]
        yi = float(y[i])
        lo, r = _link(kind, z, yi)
        loss += lo
        if kind == LEAST_SQUARES:
            metric += r * r
        elif (z > 0.0) == (yi > 0.5):
            metric += 1.0
    return loss, metric


@numba.njit(cache=True, fastmath=True)
def logistic_grad(X, y, w, g, scale):
    """Binary logistic loss sum and gradient sum over rows of ``X`` (labels 0/1).

    ``g += scale * X.T @ (sigmoid(X @ w) - y)``; returns
    ``scale * sum(softplus(X @ w) - y * (X @ w))``.
    """
    if X.itemsize == 4:
        return _linear_grad32(X, y, w, g, scale, LOGISTIC)
    return _linear_grad(X, y, w, g, scale, LOGISTIC)


@numba.njit(cache=True, fastmath=True)
def least_squares_grad(X, y, w, g, scale):
    """Least squares: ``g += scale * X.T @ (X @ w - y)``; returns
    ``scale * sum(0.5 * (X @ w - y)**2)``."""
    if X.itemsize == 4:
        return _linear_grad32(X, y, w, g, scale, LEAST_SQUARES)
    return _linear_grad(X, y, w, g, scale, LEAST_SQUARES)


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
def softmax_grad(X, y, w, g, scale):
    """Multinomial logistic (softmax) loss sum and gradient sum (labels 0..C-1).

    ``w`` and ``g`` are a (d x C) matrix W flattened in C order. With ``z = X @ W`` and
    ``P = softmax(z)`` row-wise, ``g += scale * X.T @ (P - onehot(y))``; returns
    ``scale * sum(logsumexp(z) - z[y])``.
    """
    n, d = X.shape
    C = w.shape[0] // d
    z = np.empty(C)
    r = np.empty(C)
    loss = 0.0
    for i in range(n):
        lse = _softmax_row(X, i, w, C, z)
        yi = int(y[i])
        loss += lse - z[yi]
        for c in range(C):
            r[c] = scale * math.exp(z[c] - lse)
        r[yi] -= scale
        for j in range(d):
            xj = float(X[i, j])
            base = j * C
            for c in range(C):
                g[base + c] += r[c] * xj
    return scale * loss


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
        best = 0
        for c in range(1, C):
            if z[c] > z[best]:
                best = c
        if best == yi:
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


GRAD = {"logistic": logistic_grad, "softmax": softmax_grad, "least-squares": least_squares_grad}
EVAL = {"logistic": logistic_eval, "softmax": softmax_eval, "least-squares": least_squares_eval}


def warmup():
    """Compile every kernel for float64 and float32 data (and fill numba's on-disk cache)."""
    for dt in (np.float64, np.float32):
        X = np.zeros((5, 3), dt)
        y = np.zeros(5, dt)
        w = np.zeros(3, dt)
        g = np.zeros(3)
        logistic_grad(X, y, w, g, 1.0)
        least_squares_grad(X, y, w, g, 1.0)
        logistic_eval(X, y, w)
        least_squares_eval(X, y, w)
        read_once(X)
        wc = np.zeros(6, dt)
        gc = np.zeros(6)
        softmax_grad(X, y, wc, gc, 1.0)
        softmax_eval(X, y, wc)
