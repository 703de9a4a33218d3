"""The public Gaussian NLL and soft log-variance bounds: a hand-worked case, layouts, bad input."""
import numpy as np
import pytest

import fastmbrl as fm


def test_gaussian_nll_by_hand():
    # E = 1, B = 2, D = 1; rows (mean, logvar, target) = (0, 0, 1) and (1, ln 4, 3)
    # row 1: (1 - 0)^2 e^0 + 0 = 1;  row 2: (3 - 1)^2 / 4 + ln 4 = 1 + 1.386294
    # loss = (1 + 2.386294) / 2 = 1.693147
    # dmean = -2 (t - m) e^-lv / 2 = [-1, -0.5];  dlogvar = (1 - sq) / 2 = [0, 0]
    mean = np.array([[[0.0], [1.0]]])
    logvar = np.array([[[0.0], [np.log(4.0)]]])
    target = np.array([[[1.0], [3.0]]])
    loss, dmean, dlogvar = fm.nn.gaussian_nll(mean, logvar, target)
    assert loss == pytest.approx((1 + 1 + np.log(4.0)) / 2, rel=1e-12)
    np.testing.assert_allclose(dmean[0, :, 0], [-1.0, -0.5], rtol=1e-12)
    np.testing.assert_allclose(dlogvar[0, :, 0], [0.0, 0.0], atol=1e-15)


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_gaussian_nll_accepts_any_layout(rng, layout):
    shape = (3, 8, 2)
    arrays = [rng.standard_normal(shape) for _ in range(3)]
    expected = fm.nn.gaussian_nll(*arrays)
    if layout == "F":
        arrays = [np.asfortranarray(a) for a in arrays]
    elif layout == "strided":
        arrays = [np.repeat(a, 2, axis=1)[:, ::2] for a in arrays]
    for a in arrays:
        a.flags.writeable = False
    got = fm.nn.gaussian_nll(*arrays)
    assert got[0] == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12)


def test_soft_bounds_by_hand():
    # max = 0, min = -10, raw = 0: lv1 = 0 - softplus(0) = -ln 2; lv = -10 + softplus(-ln 2 + 10)
    raw = np.zeros((1, 1, 1))
    lv, cache = fm.nn.soft_bound_logvar(raw, np.array([0.0]), np.array([-10.0]))
    lv1 = -np.log(2.0)
    assert lv[0, 0, 0] == pytest.approx(-10 + np.log1p(np.exp(lv1 + 10)), rel=1e-12)
    d_raw, d_max, d_min = fm.nn.soft_bound_logvar_backward(np.ones((1, 1, 1)), cache)
    # a = sigmoid(0) = 0.5, c = sigmoid(lv1 + 10) ~ 0.99991: d_raw = a c, d_max = (1 - a) c
    c = 1 / (1 + np.exp(-(lv1 + 10)))
    assert d_raw[0, 0, 0] == pytest.approx(0.5 * c, rel=1e-12)
    assert d_max[0] == pytest.approx(0.5 * c, rel=1e-12)
    assert d_min[0] == pytest.approx(1 - c, rel=1e-9)


@pytest.mark.parametrize("bad, match, exc", [
    (lambda m, lv, t: (m[:, :3], lv, t), "logvar: expected shape", ValueError),
    (lambda m, lv, t: (m, lv.astype(np.float32), t), "logvar: expected dtype", TypeError),
    (lambda m, lv, t: (m, lv, np.where(t > 0, np.nan, t)), "target: contains non-finite", ValueError),
    (lambda m, lv, t: (m[0], lv[0], t[0]), "3-D", ValueError),
    (lambda m, lv, t: (m.astype(np.int64), lv, t), "mean: expected a float32 or float64", TypeError),
])
def test_gaussian_nll_bad_input(rng, bad, match, exc):
    arrays = [rng.standard_normal((2, 4, 3)) for _ in range(3)]
    with pytest.raises(exc, match=match):
        fm.nn.gaussian_nll(*bad(*arrays))


def test_soft_bounds_bad_input(rng):
    raw = rng.standard_normal((2, 4, 3))
    with pytest.raises(ValueError, match="max_logvar: expected shape"):
        fm.nn.soft_bound_logvar(raw, np.zeros(2), np.zeros(3))
    with pytest.raises(TypeError, match="min_logvar: expected dtype"):
        fm.nn.soft_bound_logvar(raw, np.zeros(3), np.zeros(3, np.float32))
