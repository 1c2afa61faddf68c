"""Optimizers against hand-computed steps; their state survives a checkpoint."""

import h5py
import numpy as np
import pytest

from mpicode.config import OPTIONS, Config
from mpicode.io import checkpoint
from mpicode.numerics.optim import GD, Adam, Momentum, Nesterov, make_optimizer


def _cfg(**kw):
    v = {o.name: o.default for o in OPTIONS}
    v.update(kw)
    return Config(v)


W0 = np.array([1.0, -2.0])
G1 = np.array([0.5, 1.0])
G2 = np.array([-1.0, 2.0])


def test_gd_step():
    np.testing.assert_allclose(GD(0.1).step(W0, G1), [0.95, -2.1])


def test_momentum_steps_by_hand():
    opt = Momentum(0.1, 2, momentum=0.5)
    w1 = opt.step(W0, G1)           # v = g1 = [0.5, 1]
    np.testing.assert_allclose(w1, [0.95, -2.1])
    w2 = opt.step(w1, G2)           # v = 0.5*[0.5, 1] + [-1, 2] = [-0.75, 2.5]
    np.testing.assert_allclose(w2, [0.95 + 0.075, -2.1 - 0.25])


def test_nesterov_steps_by_hand():
    opt = Nesterov(0.1, 2, momentum=0.5)
    w1 = opt.step(W0, G1)           # v = [0.5, 1]; step g + mu v = [0.75, 1.5]
    np.testing.assert_allclose(w1, [1 - 0.075, -2 - 0.15])
    w2 = opt.step(w1, G2)           # v = [-0.75, 2.5]; g + mu v = [-1.375, 3.25]
    np.testing.assert_allclose(w2, [0.925 + 0.1375, -2.15 - 0.325])


def test_adam_steps_by_hand():
    opt = Adam(0.1, 2, beta1=0.5, beta2=0.75, eps=0.0)
    w1 = opt.step(W0, G1)  # bias-corrected m = g, s = g^2: the step is lr * sign(g)
    np.testing.assert_allclose(w1, W0 - 0.1 * np.sign(G1))
    w2 = opt.step(w1, G2)
    m = 0.5 * (0.5 * G1) + 0.5 * G2
    s = 0.75 * (0.25 * G1**2) + 0.25 * G2**2
    mh, sh = m / (1 - 0.5**2), s / (1 - 0.75**2)
    np.testing.assert_allclose(w2, w1 - 0.1 * mh / np.sqrt(sh))
    assert opt.t == 2


def test_step_leaves_w_unchanged():
    w = W0.copy()
    for opt in (GD(0.1), Momentum(0.1, 2), Nesterov(0.1, 2), Adam(0.1, 2)):
        opt.step(w, G1)
        np.testing.assert_array_equal(w, W0)


@pytest.mark.parametrize("name", ["gd", "momentum", "nesterov", "adam"])
def test_state_survives_a_checkpoint_file(name, tmp_path):
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((8, 5))
    cfg = _cfg(optimizer=name, lr=0.05, momentum=0.8, beta1=0.8, beta2=0.9, eps=1e-6)
    a = make_optimizer(cfg, 5)
    w = np.zeros(5)
    for g in grads[:4]:
        w = a.step(w, g)

    class _Scheme:  # checkpoint.snapshot needs a scheme's state_dict
        tau = np.zeros(2)

        def state_dict(self):
            return {"tau": self.tau.copy()}

        def load_state_dict(self, state):
            self.tau = np.asarray(state["tau"])

    snap = checkpoint.snapshot(w=w, iteration=4, n_tasks=0, vt=0.0, t_offset=0.0,
                               scheme=_Scheme(), optimizer=a)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        checkpoint.write(f, snap)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        back = checkpoint.read(f)
    b = make_optimizer(cfg, 5)
    checkpoint.restore(back, scheme=_Scheme(), optimizer=b)
    wa, wb = w.copy(), np.array(back["w"])
    for g in grads[4:]:
        wa, wb = a.step(wa, g), b.step(wb, g)
    np.testing.assert_array_equal(wa, wb)
    if name != "gd":  # a fresh optimizer (state lost) would differ
        c, wc = make_optimizer(cfg, 5), w.copy()
        for g in grads[4:]:
            wc = c.step(wc, g)
        assert not np.allclose(wc, wa)


def test_make_optimizer_defaults_to_gd_for_old_configs():
    class Old:
        lr = 0.3

    assert isinstance(make_optimizer(Old(), 3), GD)
