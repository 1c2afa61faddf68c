"""MPI tests, run by `make test-mpi` as

    mpiexec -n 2|3|5 python -m mpi4py -m pytest --with-mpi --only-mpi tests/test_mpi.py

Each compares the distributed result on COMM_WORLD with a serial numpy reference.
"""

import numpy as np
import pytest

from mpicode.config import Config, defaults, validate_for_size
from mpicode.io.datasets import synthetic
from mpicode.numerics.problem import Problem, reference_gd

pytestmark = pytest.mark.timeout(120)


def _cfg(n_workers, **kw):
    v = dict(defaults().values)
    v.update(samples=600, features=12, iterations=6, lr=0.5, seed=3, quiet=True, eval_every=1)
    v.update(kw)
    return validate_for_size(Config(v), n_workers)


def _run(comm, cfg):
    from mpicode.mpi.launch import execute
    problem = Problem(synthetic(cfg.samples, cfg.features, cfg.seed), cfg.partitions,
                      cfg.model, cfg.l2)
    coord = execute(cfg, comm, problem)
    return problem, coord


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("scheme", ["uncoded", "ignore-stragglers"])
def test_distributed_gd_matches_serial_reference(scheme):
    from mpi4py import MPI
    comm = MPI.COMM_WORLD.Dup()
    N = comm.size - 1
    # ignore-stragglers with s=0 is exact: it waits for all N
    cfg = _cfg(N, scheme=scheme, stragglers_tolerated=0 if scheme != "uncoded" else 1)
    problem, coord = _run(comm, cfg)
    if comm.rank == 0:
        ref = reference_gd(problem, cfg.lr, cfg.iterations)
        np.testing.assert_allclose(coord.w, ref[-1], rtol=1e-9, atol=1e-12)
        losses = [r["loss"] for r in coord.history]
        ref_losses = [problem.evaluate(w)["loss"] for w in ref[1:]]
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-9)
        assert all(r["coverage"] == 1.0 for r in coord.history)
    comm.Barrier()
    comm.Free()


@pytest.mark.mpi(min_size=3)
def test_ignore_stragglers_decodes_without_the_slowest():
    from mpi4py import MPI
    comm = MPI.COMM_WORLD.Dup()
    N = comm.size - 1
    cfg = _cfg(N, scheme="ignore-stragglers", stragglers_tolerated=1, stragglers="bimodal",
               slow_fraction=1.0 / N, slowdown=20.0, delay_unit=0.01, iterations=4)
    _, coord = _run(comm, cfg)
    if comm.rank == 0:
        for r in coord.history:
            assert r["coverage"] == pytest.approx((N - 1) / N)
            assert r["n_cancelled"] >= 1
    comm.Barrier()
    comm.Free()


@pytest.mark.mpi(min_size=5)
def test_coded_schemes_agree_with_uncoded():
    """Same seed, same stragglers: every exact registered scheme (uncoded, speed-aware, frc,
    cyclic, two-stage, ... from the registry) and the paper's two-stage shape follow the same
    loss trajectory to 1e-9 over 20 iterations (every exact decode is the full sum)."""
    from mpi4py import MPI

    from mpicode import registry
    from mpicode.config import UsageError
    comm = MPI.COMM_WORLD.Dup()
    N = comm.size - 1
    s = 1 if N % 2 == 0 else 0  # frc needs (s+1) | N
    runs = {}
    cases = [(name, {}) for name in registry.exact_schemes()]
    cases.append(("two-stage", {"rho": 0.75, "stage2_tolerance": 1}))
    assert cases[0][0] == "uncoded"  # the reference
    for scheme, extra in cases:
        try:
            cfg = _cfg(N, scheme=scheme, stragglers_tolerated=s, stragglers="shifted-exp",
                       delay_unit=0.004, iterations=20, **extra)
        except UsageError:  # a size this scheme does not take (same verdict on every rank)
            continue
        _, coord = _run(comm, cfg)
        if comm.rank == 0:
            runs[(scheme, bool(extra))] = coord.history
    if comm.rank == 0:
        ref = np.array([r["loss"] for r in runs[("uncoded", False)]])
        for key, hist in runs.items():
            loss = np.array([r["loss"] for r in hist])
            np.testing.assert_allclose(loss, ref, rtol=1e-9, err_msg=str(key))
            assert all(r["coverage"] == 1.0 for r in hist)
    comm.Barrier()
    comm.Free()


@pytest.mark.mpi(min_size=3)
def test_granted_chunks_deliver_bit_identical_gradients():
    """Chunked, granted sends (Rayleigh uplink, Lyapunov scheduler) give bit-for-bit the same
    gradients, hence the same model, as the ideal channel; a stale chunk is dropped; reserve
    workers with nothing to send block nobody."""
    from mpi4py import MPI

    from mpicode import mpi as runtime
    comm = MPI.COMM_WORLD.Dup()
    N = comm.size - 1
    models = {}
    # uncoded decodes the same messages in the same order whatever the timing, so the model
    # is bit-identical iff every chunked message is; two-stage with a reserve (rho 0.5)
    # leaves workers with nothing to send
    # and the same over a "real" link (--link-timing real: delivered when the last chunk is
    # here, not at its slot's end) with the wired slot model
    real = {"link_timing": "real", "access": "wired", "bottleneck": 1e6}
    for scheme, channel, extra in (("uncoded", "ideal", {}), ("uncoded", "rayleigh", {}),
                                   ("two-stage", "rayleigh", {}),
                                   ("uncoded", "rayleigh-real", real)):
        comm.Barrier()  # the previous run's STOP/ACK drain is over on every rank
        if channel == "rayleigh" and scheme == "uncoded" and comm.rank == 1:
            # a chunk of an iteration that never was: must be counted stale and dropped
            comm.Send(np.array([-7.0, 0.0, 0.0, 1.0]), dest=0, tag=runtime.TAG_CHUNK)
        cfg = _cfg(N, scheme=scheme, rho=0.5, channel=channel.split("-")[0],
                   scheduler="lyapunov", features=300, bandwidth=2e6, iterations=5, **extra)
        problem, coord = _run(comm, cfg)
        if comm.rank == 0:
            models[scheme, channel] = (coord.w.copy(), coord.history)
    if comm.rank == 0:
        w0, h0 = models["uncoded", "ideal"]
        w1, h1 = models["uncoded", "rayleigh"]
        assert w0.tobytes() == w1.tobytes()
        assert [r["loss"] for r in h0] == [r["loss"] for r in h1]
        w3, h3 = models["uncoded", "rayleigh-real"]
        assert w0.tobytes() == w3.tobytes() and all(r["comm_s"] >= 0 for r in h3)
        assert sum(r["n_stale"] for r in h1) >= 1
        assert all(r["comm_s"] >= 0 for r in h1)
        ref = reference_gd(problem, 0.5, 5)[-1]
        w2, h2 = models["two-stage", "rayleigh"]
        np.testing.assert_allclose(w2, ref, rtol=1e-9, atol=1e-12)
        assert all(r["coverage"] == 1.0 for r in h2)
    comm.Barrier()
    comm.Free()


@pytest.mark.mpi(min_size=2)
def test_drain_pipe_waits_for_the_reader_and_is_bounded():
    """What rank 0 prints before MPI_Abort must have been read by Hydra's proxy: the wait
    ends once the pipe is empty, and after its bound when nobody reads."""
    import os
    import threading
    import time

    from mpicode.mpi.bounds import drain_pipe
    r, w = os.pipe()
    try:
        os.write(w, b"mpicode: the one line\n")
        got = []
        reader = threading.Timer(0.3, lambda: got.append(os.read(r, 100)))
        t0 = time.monotonic()
        reader.start()
        drain_pipe(w, timeout=30)
        assert time.monotonic() - t0 >= 0.3  # it waited for the reader (a lower bound only)
        reader.join()
        assert got == [b"mpicode: the one line\n"]
        os.write(w, b"nobody reads this")
        t0 = time.monotonic()
        drain_pipe(w, timeout=0.5)
        assert time.monotonic() - t0 < 20  # bounded (generous: a busy CI machine)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.mpi(min_size=3)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", ["logistic", "softmax", "least-squares", "mlp"])
def test_decoded_training_loss_is_rank0s_evaluation(model, dtype):
    """Every exact scheme: the training loss and metric the workers report with their results,
    decoded with the gradient's weights (train_loss of row it, model w_it), equal rank 0's
    full evaluation of the same model (loss of row it-1) to 1e-12 relative: float64 and
    float32 alike for the linear models (a row's margin is the same bits on a worker and on
    rank 0); the float32 MLP to float32's precision (BLAS blocks its rows differently)."""
    from mpi4py import MPI

    from mpicode import registry
    from mpicode.config import UsageError
    from mpicode.mpi.launch import execute
    comm = MPI.COMM_WORLD.Dup()
    N = comm.size - 1
    s = 1 if N % 2 == 0 else 0  # frc needs (s+1) | N
    loose = model == "mlp" and dtype == "float32"
    for scheme in registry.exact_schemes():
        try:
            cfg = _cfg(N, scheme=scheme, stragglers_tolerated=s, stragglers="shifted-exp",
                       delay_unit=0.002, iterations=4, model=model, dtype=dtype, hidden="6",
                       eval_every=1)
        except UsageError:  # a size this scheme does not take (same verdict on every rank)
            continue
        problem = Problem.from_config(cfg, cfg.partitions,
                                      synthetic(cfg.samples, cfg.features, cfg.seed))
        comm.Barrier()
        coord = execute(cfg, comm, problem)
        if comm.rank == 0:
            h = coord.history
            assert all(r["coverage"] == 1.0 for r in h), scheme
            dec = np.array([r["train_loss"] for r in h[1:]])
            ev = np.array([r["loss"] for r in h[:-1]])
            np.testing.assert_allclose(dec, ev, rtol=1e-5 if loose else 1e-12,
                                       err_msg=f"{scheme} {model} {dtype}")
            dm = np.array([r["train_metric"] for r in h[1:]])
            em = np.array([r["train_accuracy"] for r in h[:-1]])
            np.testing.assert_allclose(dm, em, rtol=0 if loose else 1e-12,
                                       atol=2 / problem.n if loose else 0,
                                       err_msg=f"{scheme} {model} {dtype} metric")
    comm.Barrier()
    comm.Free()


@pytest.mark.mpi(min_size=3)
@pytest.mark.parametrize("channel", ["ideal", "rayleigh"])
def test_a_stale_loss_and_metric_are_dropped(channel):
    """A RESULT (ideal channel) or READY (uplink) of an iteration that never was, carrying an
    absurd loss and metric, is counted stale and dropped: train_loss/train_metric stay the
    decoded values of the current iteration's messages (= rank 0's evaluation)."""
    from mpi4py import MPI

    from mpicode import wire
    comm = MPI.COMM_WORLD.Dup()
    N = comm.size - 1
    cfg = _cfg(N, scheme="uncoded", channel=channel, scheduler="lyapunov", bandwidth=2e6,
               iterations=4)
    comm.Barrier()
    if comm.rank == 1:
        if channel == "ideal":
            stale = np.zeros(wire.Result.size(cfg.features))
            wire.result_header(stale, -7, 0, 0.0, 0.0, 1e9, 1e9)
            comm.Send(stale, dest=0, tag=wire.TAG_RESULT)
        else:
            ready = wire.Ready(-7, 0, wire.result_bytes(cfg.features), 0.0, 0.0, 1e9, 1e9)
            comm.Send(wire.encode_ready(ready), dest=0, tag=wire.TAG_READY)
    _, coord = _run(comm, cfg)
    if comm.rank == 0:
        h = coord.history
        assert sum(r["n_stale"] for r in h) >= 1
        np.testing.assert_allclose([r["train_loss"] for r in h[1:]],
                                   [r["loss"] for r in h[:-1]], rtol=1e-12)
        np.testing.assert_allclose([r["train_metric"] for r in h[1:]],
                                   [r["train_accuracy"] for r in h[:-1]], rtol=1e-12)
    comm.Barrier()
    comm.Free()
