"""Adam against steps computed by hand (Kingma & Ba 2015, Alg. 1), with and without L2 decay."""
import numpy as np
import pytest

import fastmbrl as fm


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_two_hand_computed_steps(dtype):
    # lr 0.1, betas (0.9, 0.999), eps 1e-8, p0 = 1, gradients 0.5 then -1.0
    # step 1: m = 0.05, v = 0.00025, m_hat = 0.5, v_hat = 0.25  -> p = 1 - 0.1 * 0.5 / 0.5 = 0.9
    # step 2: m = 0.9 * 0.05 - 0.1 = -0.055, v = 0.999 * 0.00025 + 0.001 = 0.00124975
    #         m_hat = -0.055 / 0.19 = -0.28947, v_hat = 0.00124975 / 0.001999 = 0.62519
    #         p = 0.9 + 0.1 * 0.28947 / 0.79069 = 0.93661
    p = np.ones(1, dtype)
    adam = fm.nn.Adam([p], lr=0.1)
    adam.step([np.array([0.5], dtype)])
    assert p[0] == pytest.approx(0.9000000019999999, rel=1e-6)
    adam.step([np.array([-1.0], dtype)])
    assert p[0] == pytest.approx(0.9366103542405653, rel=1e-6)
    assert adam.t == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_with_coupled_weight_decay(dtype):
    # decay 0.2 is added to the gradient (L2, coupled): g1 = 0.5 + 0.2 * 1 = 0.7
    # step 1: m = 0.07, v = 0.00049, m_hat = 0.7, v_hat = 0.49 -> p = 1 - 0.1 = 0.9
    # step 2: g2 = -1 + 0.2 * 0.9 = -0.82, m = 0.063 - 0.082 = -0.019, v = 0.00116191
    #         m_hat = -0.1, v_hat = 0.58125 -> p = 0.9 + 0.1 * 0.1 / 0.76240 = 0.91312
    p = np.ones(1, dtype)
    adam = fm.nn.Adam([p], lr=0.1, weight_decay=0.2)
    adam.step([np.array([0.5], dtype)])
    assert p[0] == pytest.approx(0.9000000014285714, rel=1e-6)
    adam.step([np.array([-1.0], dtype)])
    assert p[0] == pytest.approx(0.9131165673433346, rel=1e-6)


def test_adam_per_layer_decay_on_the_flat_buffer():
    net = fm.nn.EnsembleMLP(2, 2, hidden=(3,), ensemble_size=2, dtype=np.float64, seed=0)
    decays = [0.0, 0.0, 0.5, 0.0]
    adam = fm.nn.Adam(net.params, lr=0.1, weight_decay=decays)
    assert adam._flat is not None  # one kernel call over the whole buffer
    before = [p.copy() for p in net.params]
    zeros = [np.zeros_like(p) for p in net.params]
    adam.step(zeros)
    # zero gradient: only the decayed layer moves, each weight by lr * sign(weight) on step one
    np.testing.assert_array_equal(net.params[0], before[0])
    np.testing.assert_allclose(net.params[2], before[2] - 0.1 * np.sign(before[2]), atol=1e-7)


def test_adam_bad_input():
    p = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="weight_decay"):
        fm.nn.Adam([p], weight_decay=[0.1, 0.2])
    with pytest.raises(ValueError, match="lr"):
        fm.nn.Adam([p], lr=0)
    adam = fm.nn.Adam([p])
    with pytest.raises(ValueError, match=r"grads\[0\]"):
        adam.step([np.zeros(4, np.float32)])
