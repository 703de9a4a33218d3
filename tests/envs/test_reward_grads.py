"""Every spec's reward_grad_fn against central finite differences of its reward_fn (float64, random
inputs away from the rewards' non-differentiable points), and by hand at a few points."""
import numpy as np
import pytest

from fastmbrl.envs import reward_fns, specs, termination_fns

# (D_obs, D_act) of every spec, without building the environments (MuJoCo is optional)
DIMS = {"Pendulum-v1": (3, 1), "MountainCarContinuous-v0": (2, 1), "CartPoleContinuous-v0": (4, 1),
        "InvertedPendulum-v5": (4, 1), "Reacher-v5": (10, 2), "HalfCheetah-v5": (18, 6),
        "Hopper-v5": (12, 3), "Walker2d-v5": (18, 6), "Ant-v5": (29, 8), "Humanoid-v5": (47, 17)}
# the healthy bounds of the locomotion specs: (column, values drawn from, bounds to keep off)
HEALTHY = {"Hopper-v5": ((1, (0.4, 1.2), (0.7,)), (2, (-0.3, 0.3), (-0.2, 0.2))),
           "Walker2d-v5": ((1, (0.5, 2.3), (0.8, 2.0)), (2, (-1.3, 1.3), (-1.0, 1.0))),
           "Ant-v5": ((2, (0.1, 1.1), (0.2, 1.0)),),
           "Humanoid-v5": ((2, (0.8, 2.2), (1.0, 2.0)),)}
FD_STEP = 1e-6


def test_dims_cover_every_spec():
    assert set(DIMS) == set(specs.SPECS)


def random_inputs(spec_id, rng, n=64):
    """Random rows, moved off the points where the reward is not differentiable."""
    d_obs, d_act = DIMS[spec_id]
    obs = rng.uniform(-2, 2, (n, d_obs))
    act = rng.uniform(-3, 3, (n, d_act))
    nxt = rng.uniform(-2, 2, (n, d_obs))
    if spec_id == "Pendulum-v1":
        th = rng.uniform(-np.pi, np.pi, n)
        rho = rng.uniform(0.8, 1.2, n)
        obs[:, 0], obs[:, 1] = rho * np.cos(th), rho * np.sin(th)
        obs[:, 0][(obs[:, 0] < 0) & (np.abs(obs[:, 1]) < 1e-3)] = 0.5     # the wrap at theta = pi
        act[np.abs(np.abs(act) - 2.0) < 1e-3] = 0.5                      # the torque clip
    elif spec_id == "MountainCarContinuous-v0":
        nxt[:, 0] = rng.uniform(0.3, 0.6, n)                             # both sides of the flag
        nxt[np.abs(nxt[:, 0] - 0.45) < 1e-3, 0] = 0.5
        nxt[np.abs(nxt[:, 1]) < 1e-3, 1] = 0.5
    elif spec_id == "InvertedPendulum-v5":
        nxt[:, 1] = rng.uniform(-0.3, 0.3, n)                            # alive and terminated
        nxt[np.abs(np.abs(nxt[:, 1]) - 0.2) < 1e-3, 1] = 0.0
    elif spec_id == "Reacher-v5":
        nxt[:5, 8:] = rng.uniform(-1e-2, 1e-2, (5, 2))                    # near the target
    elif spec_id in HEALTHY:
        for col, (lo, hi), bounds in HEALTHY[spec_id]:                   # healthy and not
            nxt[:, col] = rng.uniform(lo, hi, n)
            for b in bounds:
                nxt[np.abs(nxt[:, col] - b) < 1e-3, col] = 0.5 * (lo + hi)
    return obs, act, nxt


def fd_gradients(reward_fn, obs, act, nxt):
    """d r_i / d x_i for every row i (rows are independent) by central differences."""
    out = []
    for which in range(3):
        args = [obs, act, nxt]
        g = np.zeros_like(args[which])
        for j in range(g.shape[1]):
            hi = [a.copy() for a in args]
            lo = [a.copy() for a in args]
            hi[which][:, j] += FD_STEP
            lo[which][:, j] -= FD_STEP
            g[:, j] = (reward_fn(*hi) - reward_fn(*lo)) / (2 * FD_STEP)
        out.append(g)
    return out


@pytest.mark.parametrize("spec_id", sorted(DIMS))
def test_reward_grad_fn_matches_finite_differences(spec_id, global_random_seed):
    spec = specs.SPECS[spec_id]
    rng = np.random.default_rng(global_random_seed)
    obs, act, nxt = random_inputs(spec_id, rng)
    got = spec.reward_grad_fn(obs, act, nxt)
    want = fd_gradients(spec.reward_fn, obs, act, nxt)
    assert isinstance(got, tuple) and len(got) == 3
    for name, g, w, x in zip(("d_obs", "d_act", "d_next_obs"), got, want, (obs, act, nxt)):
        assert g.shape == x.shape and g.dtype == np.float64, name
        scale = max(np.abs(w).max(), 1.0)
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-6 * scale, err_msg=f"{spec_id} {name}")


@pytest.mark.parametrize("spec_id", sorted(DIMS))
def test_reward_grad_fn_keeps_float32(spec_id):
    spec = specs.SPECS[spec_id]
    obs, act, nxt = (a.astype(np.float32) for a in random_inputs(spec_id, np.random.default_rng(1)))
    got = spec.reward_grad_fn(obs, act, nxt)
    want = spec.reward_grad_fn(*(a.astype(np.float64) for a in (obs, act, nxt)))
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_pendulum_grad_by_hand_across_the_wrap():
    """theta = +-(pi - 0.1) on the unit circle: dr/dtheta = -2 angle_normalize(theta) = -+2 (pi - 0.1),
    so d/dcos = dr/dtheta * (-sin), d/dsin = dr/dtheta * cos; the signs flip across the wrap."""
    th = np.array([np.pi - 0.1, -(np.pi - 0.1)])
    obs = np.stack([np.cos(th), np.sin(th), [1.0, -2.0]], axis=1)
    act = np.array([[1.0], [2.5]])                     # inside the clip, and outside it
    d_obs, d_act, d_next = reward_fns.pendulum_grad(obs, act, obs)
    dr_dth = -2.0 * th
    np.testing.assert_allclose(d_obs[:, 0], dr_dth * -np.sin(th), rtol=1e-10)
    np.testing.assert_allclose(d_obs[:, 1], dr_dth * np.cos(th), rtol=1e-10)
    np.testing.assert_allclose(d_obs[:, 2], [-0.2, 0.4], rtol=1e-14)
    np.testing.assert_allclose(d_act[:, 0], [-0.002, 0.0], rtol=1e-14)
    assert np.all(d_next == 0)


def test_piecewise_constant_rewards_have_zero_gradient_off_their_jumps():
    rng = np.random.default_rng(0)
    obs, act, nxt = random_inputs("InvertedPendulum-v5", rng)
    done = termination_fns.inverted_pendulum(obs, act, nxt)
    assert done.any() and not done.all()               # both sides of the jump were drawn
    for g in reward_fns.inverted_pendulum_grad(obs, act, nxt):
        assert np.all(g == 0)
    obs, act, nxt = random_inputs("MountainCarContinuous-v0", rng)
    d_obs, d_act, d_next = reward_fns.mountain_car_continuous_grad(obs, act, nxt)
    np.testing.assert_array_equal(d_act, -0.2 * act)
    assert np.all(d_obs == 0) and np.all(d_next == 0)


def test_reacher_grad_at_the_target_is_finite():
    obs, act, nxt = np.zeros((1, 10)), np.ones((1, 2)), np.zeros((1, 10))
    d_obs, d_act, d_next = reward_fns.reacher_grad(obs, act, nxt)
    assert np.all(d_obs == 0) and np.all(np.isfinite(d_next)) and np.all(d_next == 0)
    np.testing.assert_array_equal(d_act, [[-2.0, -2.0]])
