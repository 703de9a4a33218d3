"""EnsembleMLP: initialisation, a network worked by hand, layouts and dtypes, bad input."""
import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl._config import ATOL, RTOL
from fastmbrl.nn import _reference


def test_init_is_truncated_normal_with_pets_std():
    net = fm.nn.EnsembleMLP(50, 30, hidden=(400,), ensemble_size=5, dtype=np.float64, seed=3)
    for W, b, fan_in in ((net.params[0], net.params[1], 50), (net.params[2], net.params[3], 400)):
        std = 1 / (2 * np.sqrt(fan_in))
        assert np.all(b == 0)
        assert np.abs(W).max() <= 2 * std
        # a normal truncated at +-2 sigma has standard deviation 0.8796 sigma
        assert W.std() == pytest.approx(0.8796 * std, rel=0.03)
        assert abs(W.mean()) < 0.02 * std
    again = fm.nn.EnsembleMLP(50, 30, hidden=(400,), ensemble_size=5, dtype=np.float64, seed=3)
    np.testing.assert_array_equal(net.flat, again.flat)
    assert all(np.shares_memory(p, net.flat) for p in net.params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_network_by_hand(dtype):
    # one member, 2 -> 2 (ReLU) -> 2, x = [1, 2]
    net = fm.nn.EnsembleMLP(2, 2, hidden=(2,), ensemble_size=1, activation="relu", dtype=dtype)
    W0, b0, W1, b1 = net.params
    W0[0] = [[1, -1], [0.5, 1]]
    b0[0] = [0, -2]
    W1[0] = [[1, 2], [3, 4]]
    b1[0] = [0.5, -0.5]
    x = np.array([[[1.0, 2.0]]], dtype)
    # z0 = x W0 + b0 = [1 + 1, -1 + 2] + [0, -2] = [2, -1];  h = relu(z0) = [2, 0]
    # y = h W1 + b1 = [2, 4] + [0.5, -0.5] = [2.5, 3.5]
    y, cache = net.forward(x)
    np.testing.assert_array_equal(y, [[[2.5, 3.5]]])
    # dy = [1, 1]: dW1 = h^T dy = [[2, 2], [0, 0]], db1 = [1, 1]
    # dh = dy W1^T = [3, 7]; relu' = [1, 0] -> dz0 = [3, 0]
    # dW0 = x^T dz0 = [[3, 0], [6, 0]], db0 = [3, 0], dx = dz0 W0^T = [3, 1.5]
    grads, dx = net.backward(np.ones((1, 1, 2), dtype), cache)
    np.testing.assert_array_equal(grads[2][0], [[2, 2], [0, 0]])
    np.testing.assert_array_equal(grads[3][0], [1, 1])
    np.testing.assert_array_equal(grads[0][0], [[3, 0], [6, 0]])
    np.testing.assert_array_equal(grads[1][0], [3, 0])
    np.testing.assert_array_equal(dx, [[[3, 1.5]]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_forward_backward_match_twins_for_any_layout(rng, dtype, layout):
    net = fm.nn.EnsembleMLP(3, 4, hidden=(16, 8), ensemble_size=3, dtype=dtype, seed=1)
    x = rng.standard_normal((3, 10, 3)).astype(dtype)
    dy = rng.standard_normal((3, 10, 4)).astype(dtype)
    # the twins, layer by layer
    h, zs, hs = x, [], [x]
    for layer in range(3):
        act = 3 if layer < 2 else 0
        O = net.params[2 * layer].shape[2]
        z, y = np.empty((3, 10, O), dtype), np.empty((3, 10, O), dtype)
        _reference._dense_forward(h, net.params[2 * layer], net.params[2 * layer + 1], act, z, y)
        zs.append(z)
        hs.append(y)
        h = y
    if layout == "F":
        x, dy = np.asfortranarray(x), np.asfortranarray(dy)
    elif layout == "strided":
        x, dy = np.repeat(x, 2, axis=1)[:, ::2], np.repeat(dy, 2, axis=1)[:, ::2]
    x.flags.writeable = False
    out, cache = net.forward(x)
    np.testing.assert_allclose(out, h, rtol=RTOL[dtype], atol=ATOL[dtype])
    grads, dx = net.backward(dy, cache)
    g = dy
    for layer in range(2, -1, -1):
        act = 3 if layer < 2 else 0
        W = net.params[2 * layer]
        dz, dW, db, dxl = (np.empty_like(zs[layer]), np.empty_like(W),
                           np.empty_like(net.params[2 * layer + 1]), np.empty_like(hs[layer]))
        _reference._dense_backward(hs[layer], W, zs[layer], np.ascontiguousarray(g), act, dz, dW, db, dxl)
        np.testing.assert_allclose(grads[2 * layer], dW, rtol=RTOL[dtype], atol=10 * ATOL[dtype])
        np.testing.assert_allclose(grads[2 * layer + 1], db, rtol=RTOL[dtype], atol=10 * ATOL[dtype])
        g = dxl
    np.testing.assert_allclose(dx, g, rtol=RTOL[dtype], atol=10 * ATOL[dtype])


@pytest.mark.parametrize("make, match, exc", [
    (lambda x: x.astype(np.float64), "x: expected a float32 array", TypeError),
    (lambda x: x[:2], r"x: expected shape \(3, B, 4\)", ValueError),
    (lambda x: x[..., :3], r"x: expected shape \(3, B, 4\)", ValueError),
    (lambda x: np.where(x > 1, np.nan, x).astype(np.float32), "x: contains non-finite", ValueError),
    (lambda x: x.tolist(), "x: expected a float32 array", TypeError),
])
def test_forward_bad_input(rng, make, match, exc):
    net = fm.nn.EnsembleMLP(4, 2, hidden=(5,), ensemble_size=3)
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    with pytest.raises(exc, match=match):
        net.forward(make(x))


def test_backward_bad_input(rng):
    net = fm.nn.EnsembleMLP(4, 2, hidden=(5,), ensemble_size=3)
    with pytest.raises(TypeError, match="cache: expected the ForwardCache"):
        net.backward(np.zeros((3, 6, 2), np.float32), None)
    _, cache = net.forward(rng.standard_normal((3, 6, 4)).astype(np.float32))
    with pytest.raises(ValueError, match="dy: expected 6 rows"):
        net.backward(np.zeros((3, 5, 2), np.float32), cache)
    other = fm.nn.EnsembleMLP(4, 2, hidden=(5,), ensemble_size=3)
    with pytest.raises(TypeError, match="cache: expected the ForwardCache"):
        other.backward(np.zeros((3, 6, 2), np.float32), cache)
    with pytest.raises(ValueError, match="grad_flat_out: expected"):
        net.backward(np.zeros((3, 6, 2), np.float32), cache, grad_flat_out=np.zeros(3, np.float32))


def test_constructor_bad_input():
    with pytest.raises(ValueError, match="activation"):
        fm.nn.EnsembleMLP(2, 2, activation="gelu")
    with pytest.raises(ValueError, match="ensemble_size"):
        fm.nn.EnsembleMLP(2, 2, ensemble_size=0)
    with pytest.raises(TypeError, match="dtype"):
        fm.nn.EnsembleMLP(2, 2, dtype=np.int32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_concurrent_passes_match_sequential_ones(rng, dtype):
    """Two passes alive at once (forward, forward, backward, backward) give the sequential results."""
    net = fm.nn.EnsembleMLP(3, 2, hidden=(7, 5), ensemble_size=2, dtype=dtype, seed=3)
    xa = rng.standard_normal((2, 6, 3)).astype(dtype)
    xb = rng.standard_normal((2, 4, 3)).astype(dtype)      # another batch size too
    dya = rng.standard_normal((2, 6, 2)).astype(dtype)
    dyb = rng.standard_normal((2, 4, 2)).astype(dtype)
    seq = []
    for x, dy in ((xa, dya), (xb, dyb)):
        y, cache = net.forward(x)
        grads, dx = net.backward(dy, cache)
        seq.append((y, [g.copy() for g in grads], dx))
    ya, ca = net.forward(xa)
    yb, cb = net.forward(xb)
    gb, dxb = net.backward(dyb, cb)
    ga, dxa = net.backward(dya, ca)
    for (y, grads, dx), (y2, grads2, dx2) in zip(seq, ((ya, ga, dxa), (yb, gb, dxb))):
        np.testing.assert_array_equal(y, y2)
        np.testing.assert_array_equal(dx, dx2)
        for g, g2 in zip(grads, grads2):
            np.testing.assert_array_equal(g, g2)
    assert not np.array_equal(seq[0][2][:, :4], seq[1][2])      # the two passes differ
