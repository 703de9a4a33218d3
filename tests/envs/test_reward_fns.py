"""Each spec's reward and termination functions reproduce the environment on real transitions."""
import gymnasium as gym
import numpy as np
import pytest

import fastmbrl.envs as fenvs
from fastmbrl.envs import reward_fns, termination_fns

N_TRANSITIONS = 1000


def _collect(made, n, seed, policy=None):
    """Roll random (or given) actions for n transitions, resetting on termination/truncation."""
    env = made.env
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows = {"obs": [], "act": [], "next_obs": [], "reward": [], "terminated": []}
    while len(rows["obs"]) < n:
        act = env.action_space.sample() if policy is None else policy(obs, rng)
        next_obs, reward, terminated, truncated, _ = env.step(act)
        for key, value in zip(rows, (obs, act, next_obs, reward, terminated)):
            rows[key].append(np.asarray(value, dtype=np.float64) if key != "terminated" else value)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    return {k: np.array(v) for k, v in rows.items()}


def _mountain_car_policy(obs, rng):
    # Push along the velocity (energy pumping) so the car reaches the flag and terminates.
    return np.array([1.0 if obs[1] >= 0 else -1.0], dtype=np.float32) * rng.uniform(0.8, 1.0)


SPEC_IDS = [s.id for s in fenvs.list_specs()]


@pytest.mark.parametrize("env_id", SPEC_IDS)
def test_reward_and_termination_match_env(env_id):
    spec = fenvs.get_spec(env_id)
    if not spec.available:
        pytest.skip(f"{env_id} needs the optional {spec.requires} dependency")
    made = fenvs.make(env_id)
    policy = _mountain_car_policy if env_id.startswith("MountainCar") else None
    data = _collect(made, N_TRANSITIONS, seed=3, policy=policy)
    reward = made.reward_fn(data["obs"], data["act"], data["next_obs"])
    done = made.termination_fn(data["obs"], data["act"], data["next_obs"])
    assert reward.shape == (N_TRANSITIONS,)
    assert done.shape == (N_TRANSITIONS,) and done.dtype == np.bool_
    assert np.max(np.abs(reward - data["reward"])) < 1e-5
    np.testing.assert_array_equal(done, data["terminated"])
    if env_id in ("MountainCarContinuous-v0", "CartPoleContinuous-v0", "InvertedPendulum-v5"):
        assert data["terminated"].any(), "the data should exercise the termination branch"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn, obs_dim, act_dim", [
    (reward_fns.pendulum, 3, 1), (reward_fns.mountain_car_continuous, 2, 1),
    (reward_fns.constant_one, 4, 1), (reward_fns.inverted_pendulum, 4, 1),
    (reward_fns.reacher, 10, 2), (reward_fns.half_cheetah, 18, 6), (reward_fns.hopper, 12, 3),
    (reward_fns.walker2d, 18, 6), (reward_fns.ant, 29, 8), (reward_fns.humanoid, 47, 17)])
def test_reward_fns_keep_dtype_and_accept_views(fn, obs_dim, act_dim, dtype):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(7, obs_dim)).astype(dtype)
    act = rng.uniform(-1, 1, size=(7, act_dim)).astype(dtype)
    nxt = rng.normal(size=(7, obs_dim)).astype(dtype)
    out = fn(obs, act, nxt)
    assert out.dtype == dtype and out.shape == (7,)
    # A non-contiguous view gives the same rows as its contiguous copy.
    big = np.repeat(obs, 2, axis=0)[::2]
    np.testing.assert_array_equal(fn(big, act, nxt), out)


def test_pendulum_reward_hand_worked():
    # theta = pi/2 (cos 0, sin 1), theta_dot = 2, torque 3 clipped to 2:
    # cost = (pi/2)^2 + 0.1 * 4 + 0.001 * 4 = 2.4674011 + 0.4 + 0.004
    obs = np.array([[0.0, 1.0, 2.0]])
    out = reward_fns.pendulum(obs, np.array([[3.0]]), obs)
    np.testing.assert_allclose(out, [-(np.pi / 2) ** 2 - 0.404], rtol=1e-12)


def test_termination_fns_hand_worked():
    nxt = np.array([[2.5, 0, 0, 0], [0, 0, 0.3, 0], [2.3, 0, 0.2, 0]])
    np.testing.assert_array_equal(termination_fns.cartpole(nxt, nxt[:, :1], nxt),
                                  [True, True, False])
    mc = np.array([[0.45, 0.0], [0.46, -0.01], [0.44, 0.05]])
    np.testing.assert_array_equal(termination_fns.mountain_car_continuous(mc, mc[:, :1], mc),
                                  [True, False, False])
    ip = np.array([[0.0, 0.21, 0, 0], [0.0, 0.1, np.nan, 0], [0.0, -0.2, 0, 0]])
    np.testing.assert_array_equal(termination_fns.inverted_pendulum(ip, ip[:, :1], ip),
                                  [True, True, False])
    np.testing.assert_array_equal(reward_fns.inverted_pendulum(ip, ip[:, :1], ip), [0, 0, 1])
    assert not termination_fns.no_termination(ip, ip, ip).any()


def test_atan2_fast_matches_numpy_on_all_quadrants_and_edges():
    atan2 = reward_fns.atan2_fast
    # Dense polar grid over every quadrant at several radii, plus axes, signed zeros (the branch cut
    # y = +-0, x < 0), tiny and huge magnitudes, infinities.
    ang = np.linspace(-np.pi, np.pi, 4001)
    pts = [(r * np.sin(ang), r * np.cos(ang)) for r in (1e-300, 1e-8, 0.3, 1.0, 7.0, 1e12)]
    ys = np.concatenate([p[0] for p in pts])
    xs = np.concatenate([p[1] for p in pts])
    special = [0.0, -0.0, 1.0, -1.0, 1e-310, -1e-310, 5e-324, 1e-20, -1e-20, 1e300, -1e300,
               np.inf, -np.inf]
    sy, sx = np.meshgrid(special, special)
    ys = np.concatenate([ys, sy.ravel()])
    xs = np.concatenate([xs, sx.ravel()])
    got = np.array([atan2(y, x) for y, x in zip(ys, xs)])
    want = np.arctan2(ys, xs)
    assert np.max(np.abs(got - want)) < 1e-10
    # Same sign as numpy everywhere, including the signed zeros and the branch cut at +-pi.
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    assert atan2(-0.0, -1.0) == -np.pi and atan2(0.0, -1.0) == np.pi
    assert atan2(-0.0, -0.0) == -np.pi and atan2(0.0, 0.0) == 0.0
    assert np.isnan(atan2(np.nan, 1.0)) and np.isnan(atan2(1.0, np.nan))
    # float32 inputs are widened: the result matches arctan2 of the widened values.
    y32 = np.float32(0.1234567)
    x32 = np.float32(-0.7654321)
    assert abs(atan2(y32, x32) - np.arctan2(np.float64(y32), np.float64(x32))) < 1e-10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pendulum_reward_matches_arctan2_formula(dtype):
    rng = np.random.default_rng(5)
    n = 2000
    th = rng.uniform(-np.pi, np.pi, n)
    obs = np.stack([np.cos(th), np.sin(th), rng.normal(0, 4, n)], axis=1)
    obs[:4, :2] = [[-1.0, 0.0], [-1.0, -0.0], [0.0, 0.0], [1e-30, -1e-30]]
    obs = obs.astype(dtype)
    act = rng.uniform(-3, 3, (n, 1)).astype(dtype)
    o = obs.astype(np.float64)
    u = np.clip(act[:, 0].astype(np.float64), -2, 2)
    want = -(np.arctan2(o[:, 1], o[:, 0]) ** 2 + 0.1 * o[:, 2] ** 2 + 0.001 * u ** 2)
    got = reward_fns.pendulum(obs, act, obs)
    assert got.dtype == dtype
    tol = 1e-9 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
