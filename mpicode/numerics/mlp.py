"""Fused numba forward + backward pass of a multilayer perceptron over one partition.

This module imports nothing of mpicode. The network maps ``d`` inputs through one or two
hidden layers (ReLU or tanh) to ``C`` logits with a softmax cross-entropy loss (labels
0..C-1). ``sizes = [d, H1, (H2,) C]`` (int64). All parameters live in one flat float64 vector
``w`` (so the MPI protocol, checkpoints and the decode treat the MLP like a linear model),
layer after layer: ``W_l`` (``sizes[l] x sizes[l+1]``, C order) then ``b_l``
(``sizes[l+1]``).

:func:`mlp_pass` follows the convention of :mod:`mpicode.numerics.kernels`: it *accumulates*
``scale * gradient-sum`` into the float64 ``g`` and returns ``(scale * loss-sum, scale *
correct predictions)``. It runs
over the rows in blocks (``block`` rows, set by the size of the workspace): forward, softmax
and backward of a block while its activations are still in cache, the matrix products going
to BLAS (numba calls scipy's ``?gemm``). Pass ``w`` in the data's dtype (float64 or
float32): the products then run in that dtype; the softmax and the accumulation run in
float64. The workspace (:func:`workspace`) is allocated once by the caller, so a call
allocates nothing.
"""

import math

import numba
import numpy as np

RELU = 0
TANH = 1
ACTIVATIONS = {"relu": RELU, "tanh": TANH}
BLOCK = 256  # rows per block: big enough for gemm to run near peak, small enough for L2


def layer_sizes(d: int, hidden, n_classes: int) -> np.ndarray:
    """``[d, H1, (H2,) C]`` as int64."""
    return np.array([d, *[int(h) for h in hidden], n_classes], np.int64)


def n_params(sizes) -> int:
    s = [int(v) for v in sizes]
    return sum(a * b + b for a, b in zip(s[:-1], s[1:], strict=True))


def init_params(sizes, seed: int) -> np.ndarray:
    """Glorot-uniform weights, zero biases, from ``seed`` alone (the same on every rank)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0x4D4C50])))
    parts = []
    s = [int(v) for v in sizes]
    for a, b in zip(s[:-1], s[1:], strict=True):
        lim = math.sqrt(6.0 / (a + b))
        parts += [rng.uniform(-lim, lim, a * b), np.zeros(b)]
    return np.concatenate(parts)


def workspace(sizes, dtype, block: int = BLOCK):
    """(A, D, T): activations and deltas of one block, and one layer's weight gradient."""
    s = [int(v) for v in sizes]
    width = sum(s[1:])
    A = np.empty(block * width, dtype)
    D = np.empty(block * width, dtype)
    T = np.empty(max(a * b for a, b in zip(s[:-1], s[1:], strict=True)), dtype)
    return A, D, T


@numba.njit(cache=True)
def _forward(Xb, w, sizes, kind, A, block):
    """Layer outputs of the rows ``Xb`` into ``A`` (post-activation; logits last)."""
    nb = Xb.shape[0]
    L = sizes.shape[0] - 1
    wo = 0
    ao = 0
    for lay in range(L):
        fin = sizes[lay]
        fout = sizes[lay + 1]
        W = w[wo:wo + fin * fout].reshape((fin, fout))
        b = w[wo + fin * fout:wo + fin * fout + fout]
        Z = A[ao:ao + nb * fout].reshape((nb, fout))
        if lay == 0:
            np.dot(Xb, W, Z)
        else:
            P = A[ao - block * fin:ao - block * fin + nb * fin].reshape((nb, fin))
            np.dot(P, W, Z)
        last = lay == L - 1
        for i in range(nb):
            for c in range(fout):
                v = Z[i, c] + b[c]
                if not last:
                    if kind == RELU:
                        v = max(v, 0.0)
                    else:
                        v = math.tanh(v)
                Z[i, c] = v
        wo += fin * fout + fout
        ao += block * fout


@numba.njit(cache=True)
def _softmax_block(Z, y, i0, D):
    """Loss sum and correct count of the logits ``Z``; ``D = softmax(Z) - onehot(y)``."""
    nb, C = Z.shape
    loss = 0.0
    correct = 0
    for i in range(nb):
        m = float(Z[i, 0])
        best = 0
        for c in range(1, C):
            if Z[i, c] > m:
                m = float(Z[i, c])
                best = c
        s = 0.0
        for c in range(C):
            s += math.exp(float(Z[i, c]) - m)
        lse = m + math.log(s)
        yi = int(y[i0 + i])
        loss += lse - float(Z[i, yi])
        if best == yi:
            correct += 1
        if D.shape[0] > 0:
            for c in range(C):
                D[i, c] = math.exp(float(Z[i, c]) - lse)
            D[i, yi] -= 1.0
    return loss, correct


@numba.njit(cache=True)
def _backward(Xb, w, g, scale, sizes, kind, A, D, T, block):
    """Accumulate ``scale *`` the weight and bias gradients of the block into ``g``, from
    the output deltas already in ``D`` (last layer)."""
    nb = Xb.shape[0]
    L = sizes.shape[0] - 1
    wo = w.shape[0]
    ao = 0
    for lay in range(L):
        ao += block * sizes[lay + 1]
    for lay in range(L - 1, -1, -1):
        fin = sizes[lay]
        fout = sizes[lay + 1]
        ao -= block * fout
        wo -= fin * fout + fout
        Dl = D[ao:ao + nb * fout].reshape((nb, fout))
        Tl = T[:fin * fout].reshape((fin, fout))
        if lay == 0:
            np.dot(Xb.T, Dl, Tl)
        else:
            P = A[ao - block * fin:ao - block * fin + nb * fin].reshape((nb, fin))
            np.dot(P.T, Dl, Tl)
        for q in range(fin * fout):
            g[wo + q] += scale * float(T[q])
        bo = wo + fin * fout
        for i in range(nb):
            for c in range(fout):
                g[bo + c] += scale * float(Dl[i, c])
        if lay > 0:
            W = w[wo:wo + fin * fout].reshape((fin, fout))
            Dp = D[ao - block * fin:ao - block * fin + nb * fin].reshape((nb, fin))
            np.dot(Dl, W.T, Dp)
            P = A[ao - block * fin:ao - block * fin + nb * fin].reshape((nb, fin))
            for i in range(nb):
                for c in range(fin):
                    a = P[i, c]
                    if kind == RELU:
                        if a <= 0.0:
                            Dp[i, c] = 0.0
                    else:
                        Dp[i, c] *= 1.0 - a * a


@numba.njit(cache=True)
def mlp_pass(X, y, w, g, scale, sizes, kind, A, D, T):
    """``g += scale * gradient-sum`` of the softmax cross-entropy over the rows of ``X``;
    returns ``(scale * loss-sum, scale * correct predictions)`` (arg-max class), all from
    the one forward pass. ``A, D, T`` from :func:`workspace`; ``kind`` RELU/TANH."""
    n = X.shape[0]
    width = 0
    for lay in range(1, sizes.shape[0]):
        width += sizes[lay]
    block = A.shape[0] // width
    C = sizes[sizes.shape[0] - 1]
    zo = block * (width - C)  # offset of the logits in A and of the output deltas in D
    loss = 0.0
    correct = 0
    for i0 in range(0, n, block):
        nb = min(block, n - i0)
        Xb = X[i0:i0 + nb]
        _forward(Xb, w, sizes, kind, A, block)
        Z = A[zo:zo + nb * C].reshape((nb, C))
        Dz = D[zo:zo + nb * C].reshape((nb, C))
        lo, k = _softmax_block(Z, y, i0, Dz)
        loss += lo
        correct += k
        _backward(Xb, w, g, scale, sizes, kind, A, D, T, block)
    return scale * loss, scale * correct


@numba.njit(cache=True)
def mlp_grad(X, y, w, g, scale, sizes, kind, A, D, T):
    """:func:`mlp_pass` returning ``scale * loss-sum`` only (the older signature)."""
    return mlp_pass(X, y, w, g, scale, sizes, kind, A, D, T)[0]


@numba.njit(cache=True)
def mlp_eval(X, y, w, sizes, kind, A):
    """Loss sum and number of correct predictions (arg-max class) over the rows of ``X``."""
    n = X.shape[0]
    width = 0
    for lay in range(1, sizes.shape[0]):
        width += sizes[lay]
    block = A.shape[0] // width
    C = sizes[sizes.shape[0] - 1]
    zo = block * (width - C)
    none = np.empty((0, C), A.dtype)
    loss = 0.0
    correct = 0
    for i0 in range(0, n, block):
        nb = min(block, n - i0)
        _forward(X[i0:i0 + nb], w, sizes, kind, A, block)
        lo, k = _softmax_block(A[zo:zo + nb * C].reshape((nb, C)), y, i0, none)
        loss += lo
        correct += k
    return loss, correct


def mlp_reference(X, y, w, sizes, activation: str = "relu"):
    """(loss-sum, gradient-sum) in plain numpy matmuls, float64: the check of the kernel."""
    X = np.asarray(X, np.float64)
    s = [int(v) for v in sizes]
    Ws, bs, o = [], [], 0
    for a, b in zip(s[:-1], s[1:], strict=True):
        Ws.append(w[o:o + a * b].reshape(a, b))
        bs.append(w[o + a * b:o + a * b + b])
        o += a * b + b
    acts = [X]
    for k, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        z = acts[-1] @ W + b
        if k < len(Ws) - 1:
            z = np.maximum(z, 0.0) if activation == "relu" else np.tanh(z)
        acts.append(z)
    Z = acts[-1]
    m = Z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(Z - m).sum(axis=1))
    idx = np.asarray(y).astype(np.int64)
    rows = np.arange(len(idx))
    loss = float(np.sum(lse - Z[rows, idx]))
    delta = np.exp(Z - lse[:, None])
    delta[rows, idx] -= 1.0
    grads = []
    for k in range(len(Ws) - 1, -1, -1):
        grads = [(acts[k].T @ delta).ravel(), delta.sum(axis=0)] + grads
        if k > 0:
            a = acts[k]
            delta = (delta @ Ws[k].T) * ((a > 0) if activation == "relu" else (1.0 - a * a))
    return loss, np.concatenate(grads)


def warmup():
    """Compile the MLP kernels for float64 and float32, one and two hidden layers."""
    for dt in (np.float64, np.float32):
        for hidden in ((3,), (3, 2)):
            sizes = layer_sizes(4, hidden, 3)
            X = np.zeros((5, 4), dt)
            y = np.zeros(5, dt)
            w = init_params(sizes, 0).astype(dt)
            g = np.zeros(w.size)
            A, D, T = workspace(sizes, dt, 4)
            for kind in (RELU, TANH):
                mlp_pass(X, y, w, g, 1.0, sizes, kind, A, D, T)
                mlp_grad(X, y, w, g, 1.0, sizes, kind, A, D, T)
                mlp_eval(X, y, w, sizes, kind, A)
