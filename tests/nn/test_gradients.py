"""Analytic gradients against central finite differences in float64, for the twins and the C kernels."""
import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl.nn import _kernels

GRAD_RTOL = 1e-6
GRAD_ATOL = 1e-8


def _check(analytic, numeric):
    np.testing.assert_allclose(analytic, numeric, rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("activation", [0, 1, 2, 3])
def test_dense_layer_gradient(impl, rng, num_grad, activation):
    E, B, I, O = 2, 3, 3, 4
    x = rng.standard_normal((E, B, I))
    W = rng.standard_normal((E, I, O))
    b = rng.standard_normal((E, O))
    G = rng.standard_normal((E, B, O))  # loss = sum(G * y): dy = G
    z, y = np.empty((E, B, O)), np.empty((E, B, O))

    def loss():
        impl._dense_forward(x, W, b, activation, z, y)
        return float(np.sum(G * y))

    loss()
    # differences of +-1e-6 must not cross the ReLU kink (true for these seeds: checked, not assumed)
    assert np.abs(z).min() > 1e-4
    dz, dW, db, dx = (np.empty((E, B, O)), np.empty((E, I, O)), np.empty((E, O)), np.empty((E, B, I)))
    impl._dense_backward(x, W, z.copy(), G, activation, dz, dW, db, dx)
    _check(dW, num_grad(loss, W))
    _check(db, num_grad(loss, b))
    _check(dx, num_grad(loss, x))


def test_gaussian_nll_gradient(impl, rng, num_grad):
    shape = (2, 4, 3)
    mean, target = rng.standard_normal(shape), rng.standard_normal(shape)
    logvar = rng.uniform(-2, 1, shape)
    dm, dl = np.empty(shape), np.empty(shape)
    scratch = (np.empty(shape), np.empty(shape))
    impl._gaussian_nll_grad(mean, logvar, target, dm, dl)

    def loss():
        return impl._gaussian_nll_grad(mean, logvar, target, *scratch)

    _check(dm, num_grad(loss, mean))
    _check(dl, num_grad(loss, logvar))


def test_soft_bounds_gradient(impl, rng, num_grad):
    shape = (2, 5, 3)
    raw = rng.uniform(-14, 4, shape)
    max_lv = np.array([0.5, 0.2, 1.0])
    min_lv = np.array([-10.0, -8.0, -3.0])
    G = rng.standard_normal(shape)
    lv = np.empty(shape)

    def loss():
        impl._soft_bound_forward(raw, max_lv, min_lv, lv)
        return float(np.sum(G * lv))

    d_raw, d_max, d_min = np.empty(shape), np.empty(3), np.empty(3)
    impl._soft_bound_backward(raw, max_lv, min_lv, G, d_raw, d_max, d_min)
    _check(d_raw, num_grad(loss, raw))
    _check(d_max, num_grad(loss, max_lv))
    _check(d_min, num_grad(loss, min_lv))


@pytest.fixture
def kernels_from(impl, monkeypatch):
    """Route EnsembleMLP's kernel calls to ``impl`` for the duration of a test."""
    _ = _kernels._impl  # bind the lazy names first so nothing rebinds them mid-test
    for name in _kernels._NAMES:
        if hasattr(impl, name):
            monkeypatch.setattr(_kernels, name, getattr(impl, name))
    return impl


@pytest.mark.parametrize("activation", ["silu", "relu", "tanh", "identity"])
def test_whole_network_gradient(kernels_from, rng, num_grad, activation):
    net = fm.nn.EnsembleMLP(3, 4, hidden=(5, 6), ensemble_size=2, activation=activation,
                            dtype=np.float64, seed=1)
    net.flat[...] += 0.1 * rng.standard_normal(net.flat.shape)  # non-zero biases too
    x = rng.standard_normal((2, 4, 3))
    G = rng.standard_normal((2, 4, 4))

    def loss():
        return float(np.sum(G * net.forward(x)[0]))

    _, cache = net.forward(x)
    grad_flat = np.empty_like(net.flat)
    grads, dx = net.backward(G, cache, grad_flat_out=grad_flat)
    assert all(np.shares_memory(g, grad_flat) for g in grads)
    _check(grad_flat, num_grad(loss, net.flat))
    _check(dx, num_grad(loss, x))


@pytest.mark.parametrize("activation", ["silu", "tanh"])
def test_fused_train_step_gradient(rng, num_grad, activation):
    E, B, D = 2, 6, 2
    net = fm.nn.EnsembleMLP(3, 2 * D, hidden=(5, 4), ensemble_size=E, activation=activation,
                            dtype=np.float64, seed=2)
    net.flat[...] += 0.1 * rng.standard_normal(net.flat.shape)
    step = fm.nn.GaussianTrainStep(net, lr=1e-3, max_logvar=[0.3, 0.6], min_logvar=[-2.0, -1.5],
                                   bound_penalty=0.05)
    x = rng.standard_normal((E, B, 3))
    target = rng.standard_normal((E, B, D))
    flat0, bounds0 = net.flat.copy(), step._bounds.copy()
    loss0 = step(x, target)
    grad_flat, bounds_grad = net.grad_flat.copy(), step.bounds_grad.copy()
    assert not np.allclose(net.flat, flat0)  # it did update
    net.flat[...] = flat0
    step._bounds[...] = bounds0

    def objective():
        nll = float(np.mean(step.evaluate(x, target)))
        return nll + 0.05 * (step.max_logvar.sum() - step.min_logvar.sum())

    assert float(np.mean(step.evaluate(x, target))) == pytest.approx(loss0, rel=1e-12)
    _check(grad_flat, num_grad(objective, net.flat))
    _check(bounds_grad, num_grad(objective, step._bounds))
