"""Kernel benchmark: the fused logistic pass against numpy's two passes and the read-once
floor, and the fused MLP pass against a numpy matmul reference (``mpicode bench kernels``;
also ``python -m mpicode.bench.kernels [--json] [--quick]``).

For each shape and dtype: the fused pass (gradient, loss and metric sums in one read of X:
:func:`mpicode.numerics.kernels.logistic_pass`, what a worker runs), numpy's two passes
(``z = X @ w``, then ``X.T @ r``: the gradient only), and the floor: one sequential numba
pass that sums X (a kernel must read X at least once). The roofline columns say what bounds
a row: its bytes (``d * itemsize``) against the floor's bandwidth, and its flops (``4 d``:
the dot product and the update, two per element each). Times are medians of repeats of the
calling thread's CPU time (``time.thread_time``: everything runs in that one thread, and CPU
time does not count the time other processes hold the core); numba compile time is measured
once and reported apart. Run it on a quiet machine: other processes on the same cores or
memory channels inflate every figure and the ratios less.

MLP rows (``mlp``): one forward + backward pass (gradient, loss and correct-count sums) of
``mlp.mlp_pass`` against the same computation in numpy matmuls in the data's dtype, with
GFLOP/s counting the matrix products only (forward, weight gradients, input deltas).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from mpicode.launcher import BLAS_THREAD_VARS, launch_env

SHAPES = ((20000, 500), (100000, 50), (2000, 5000))
DTYPES = ("float64", "float32")
# (rows, inputs, hidden widths, classes): digits-like, MNIST-like, two hidden layers
MLP_SHAPES = ((20000, 64, (64,), 10), (20000, 784, (128,), 10), (20000, 256, (256, 128), 10))


def _median_time(f, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.thread_time()
        f()
        ts.append(time.thread_time() - t)
    return float(np.median(ts))




def _one_thread_here() -> bool:
    """Limit numba and numpy's BLAS to one thread; False if BLAS cannot be limited in-process
    (it was loaded with more threads and threadpoolctl is not installed)."""
    import numba

    numba.set_num_threads(1)
    import scipy.linalg  # noqa: F401  (load the BLAS numba's matmuls use, so it is limited)
    if all(os.environ.get(v) == "1" for v in BLAS_THREAD_VARS):
        return True
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(1)
    return True


def run(as_json: bool = False, quick: bool = False, out=None) -> dict:
    """Measure and print the table (or JSON); returns the results as a dict."""
    out = sys.stdout if out is None else out
    if not _one_thread_here():
        # numpy's BLAS already runs several threads: measure in a fresh interpreter instead
        import subprocess
        env = launch_env()
        cmd = [sys.executable, "-m", "mpicode.bench.kernels", "--json"] + (
            ["--quick"] if quick else [])
        res = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True,
                                        text=True).stdout)
        _print(res, as_json, out)
        return res
    from mpicode.numerics import kernels, mlp  # lazy: numba, after the thread limits are set
    t0 = time.perf_counter()
    for warm in (kernels.warmup, mlp.warmup):
        warm()
    compile_s = time.perf_counter() - t0
    compile_cold_s = None if quick else _cold_compile_seconds()
    repeats = 5 if quick else 21
    rows = []
    for n, d in SHAPES:
        if quick:
            n = max(8, n // 10)
        for dt in DTYPES:
            rng = np.random.default_rng(0)
            X = rng.standard_normal((n, d)).astype(dt)
            y = (rng.random(n) < 0.5).astype(dt)
            w = (rng.standard_normal(d) * 0.05).astype(dt)
            g = np.zeros(d)

            def numpy_two_pass(X=X, y=y, w=w):
                z = X @ w
                r = 1.0 / (1.0 + np.exp(-z)) - y
                return X.T @ r

            def fused(X=X, y=y, w=w, g=g):
                return kernels.logistic_pass(X, y, w, g, 1.0)

            def floor(X=X):
                return kernels.read_once(X)

            for f in (fused, numpy_two_pass, floor):
                f()
            t_fused = _median_time(fused, repeats)
            t_numpy = _median_time(numpy_two_pass, repeats)
            t_floor = _median_time(floor, repeats)
            gb = X.nbytes / 1e9
            rows.append({
                "n": n, "d": d, "dtype": dt, "bytes": int(X.nbytes),
                "fused_s": t_fused, "numpy_s": t_numpy, "floor_s": t_floor,
                "fused_GBps": gb / t_fused, "numpy_GBps": gb / t_numpy, "floor_GBps": gb / t_floor,
                "fused_over_floor": t_fused / t_floor, "numpy_over_floor": t_numpy / t_floor,
                "speedup_vs_numpy": t_numpy / t_fused, **_roofline(n, d, X.itemsize,
                                                                   t_fused, t_floor)})
    res = {"compile_s": compile_s, "compile_cold_s": compile_cold_s, "repeats": repeats,
           "quick": quick, "threads": 1, "rows": rows, "mlp": _mlp_rows(quick, repeats)}
    _print(res, as_json, out)
    return res


def _roofline(n: int, d: int, itemsize: int, t_fused: float, t_floor: float) -> dict:
    """What a row costs: its bytes (read once), its flops (dot product and update, two per
    element each) and its time at the floor's bandwidth and in the fused pass."""
    return {"bytes_per_row": int(d * itemsize), "flops_per_row": 4 * d,
            "floor_ns_per_row": t_floor / n * 1e9, "fused_ns_per_row": t_fused / n * 1e9}


def _numpy_mlp(X, y, Ws, bs):
    """Loss and gradient sums of the ReLU MLP in numpy matmuls (the data's dtype)."""
    acts = [X]
    for k, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        z = acts[-1] @ W + b
        acts.append(np.maximum(z, 0) if k < len(Ws) - 1 else z)
    Z = acts[-1]
    m = Z.max(axis=1, keepdims=True)
    E = np.exp(Z - m)
    S = E.sum(axis=1)
    rows = np.arange(len(y))
    loss = float(np.sum(np.log(S) + m[:, 0] - Z[rows, y]))
    D = E / S[:, None]
    D[rows, y] -= 1
    grads = []
    for k in range(len(Ws) - 1, -1, -1):
        grads += [acts[k].T @ D, D.sum(axis=0)]
        if k:
            D = (D @ Ws[k].T) * (acts[k] > 0)
    return loss, grads


def _mlp_rows(quick: bool, repeats: int) -> list[dict]:
    from mpicode.numerics import mlp  # lazy: numba, after the thread limits are set

    out = []
    for n, d, hidden, C in MLP_SHAPES:
        n = max(8, n // 10) if quick else n
        sizes = mlp.layer_sizes(d, hidden, C)
        s = [int(v) for v in sizes]
        products = sum(a * b for a, b in zip(s[:-1], s[1:], strict=True))
        flops = 2.0 * n * (2 * products + sum(a * b for a, b in zip(s[1:-1], s[2:],
                                                                      strict=True)))
        for dt in DTYPES:
            rng = np.random.default_rng(0)
            X = rng.standard_normal((n, d)).astype(dt)
            yi = rng.integers(0, C, n)
            y = yi.astype(dt)
            w = mlp.init_params(sizes, 0).astype(dt)
            Ws, bs, o = [], [], 0
            for a, b in zip(s[:-1], s[1:], strict=True):
                Ws.append(w[o:o + a * b].reshape(a, b))
                bs.append(w[o + a * b:o + a * b + b])
                o += a * b + b
            g = np.zeros(w.size)
            ws = mlp.workspace(sizes, dt)

            def fused(X=X, y=y, w=w, g=g, ws=ws, sizes=sizes):
                return mlp.mlp_pass(X, y, w, g, 1.0, sizes, mlp.RELU, *ws)

            def numpy_ref(X=X, yi=yi, Ws=Ws, bs=bs):
                return _numpy_mlp(X, yi, Ws, bs)

            fused()
            numpy_ref()
            t_f, t_n = [], []
            for _ in range(3):  # interleaved: both see the same machine
                t_f.append(_median_time(fused, max(3, repeats // 3)))
                t_n.append(_median_time(numpy_ref, max(3, repeats // 3)))
            tf, tn = float(np.median(t_f)), float(np.median(t_n))
            out.append({"n": n, "d": d, "hidden": list(hidden), "classes": C, "dtype": dt,
                        "params": int(w.size), "fused_s": tf, "numpy_s": tn,
                        "fused_GFLOPs": flops / tf / 1e9, "numpy_GFLOPs": flops / tn / 1e9,
                        "speedup_vs_numpy": tn / tf})
    return out


def _cold_compile_seconds() -> float | None:
    """Seconds of ``kernels.warmup()`` in a fresh interpreter with an empty numba cache."""
    import subprocess
    import tempfile

    code = ("import time; t = time.perf_counter(); from mpicode.numerics import kernels, mlp; "
            "kernels.warmup(); mlp.warmup(); print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=tmp)
        try:
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                               text=True, timeout=600, check=True)
            return float(r.stdout.split()[-1])
        except (subprocess.SubprocessError, ValueError, IndexError):
            return None


def _print(res: dict, as_json: bool, out) -> None:
    rows, repeats, compile_s = res["rows"], res["repeats"], res["compile_s"]
    if as_json:
        print(json.dumps(res, indent=1), file=out)
    else:
        cold = res.get("compile_cold_s")
        print(f"numba warm-up (all kernels, float64+float32): {compile_s:.2f} s here"
              + (f", {cold:.2f} s with an empty cache" if cold is not None else "")
              + f" (excluded); medians of {repeats}; 1 thread", file=out)
        print("fused: gradient, loss and metric in one pass; numpy: gradient in two passes; "
              "floor: one read of X", file=out)
        print(f"{'shape':>13} {'dtype':>7} {'fused ms':>9} {'numpy ms':>9} {'floor ms':>9} "
              f"{'GB/s f/n/fl':>16} {'fused/floor':>11} {'numpy/floor':>11} "
              f"{'vs numpy':>8} {'B/row':>6} {'flop/row':>8} {'ns/row f/fl':>12}", file=out)
        for r in rows:
            print(f"{r['n']:>6}x{r['d']:<6} {r['dtype']:>7} {r['fused_s'] * 1e3:9.2f} "
                  f"{r['numpy_s'] * 1e3:9.2f} {r['floor_s'] * 1e3:9.2f} "
                  f"{r['fused_GBps']:5.0f}/{r['numpy_GBps']:4.0f}/{r['floor_GBps']:4.0f} "
                  f"{r['fused_over_floor']:10.2f}x {r['numpy_over_floor']:10.2f}x "
                  f"{r['speedup_vs_numpy']:7.2f}x {r.get('bytes_per_row', 0):6d} "
                  f"{r.get('flops_per_row', 0):8d} "
                  f"{r.get('fused_ns_per_row', 0):6.1f}/{r.get('floor_ns_per_row', 0):<5.1f}",
                  file=out)
        if res.get("mlp"):
            print(f"\nmlp (ReLU, softmax; forward + backward; GFLOP/s of the matmuls)\n"
                  f"{'shape':>22} {'dtype':>7} {'fused ms':>9} {'numpy ms':>9} "
                  f"{'GFLOP/s f/n':>12} {'vs numpy':>8}", file=out)
            for r in res["mlp"]:
                shape = f"{r['n']}x{r['d']}-{'-'.join(map(str, r['hidden']))}-{r['classes']}"
                print(f"{shape:>22} {r['dtype']:>7} {r['fused_s'] * 1e3:9.2f} "
                      f"{r['numpy_s'] * 1e3:9.2f} {r['fused_GFLOPs']:6.1f}/"
                      f"{r['numpy_GFLOPs']:5.1f} {r['speedup_vs_numpy']:7.2f}x", file=out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="mpicode bench kernels", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--quick", action="store_true", help="10x fewer rows, 5 repeats")
    a = p.parse_args(argv)
    run(as_json=a.json, quick=a.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
