"""Env specs, make(), the CartPole continuous environment and the wrappers."""
import gymnasium as gym
import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl.config import RunConfig, from_dict
from fastmbrl.envs import CartPoleContinuousEnv, UnknownEnvError


def test_make_pendulum_bundle():
    made = fm.envs.make("Pendulum-v1")
    assert made.obs_dim == 3 and made.act_dim == 1
    assert made.spec.max_episode_steps == 200
    assert made.env.spec.max_episode_steps == 200
    assert made.reward_fn is fm.envs.reward_fns.pendulum


def test_unknown_env_names_id_and_known_ones():
    with pytest.raises(UnknownEnvError, match="Nope-v0.*Pendulum-v1"):
        fm.envs.make("Nope-v0")
    with pytest.raises(TypeError, match="env_id"):
        fm.envs.get_spec(3)


def test_cartpole_aliases_and_gym_registration():
    assert fm.envs.get_spec("fastmbrl/CartPoleContinuous-v0").id == "CartPoleContinuous-v0"
    env = gym.make("fastmbrl/CartPoleContinuous-v0")
    assert env.spec.max_episode_steps == 200
    assert env.action_space.shape == (1,)


def test_spec_defaults_are_valid_configs():
    for spec in fm.envs.list_specs():
        config = from_dict(spec.defaults, base=RunConfig(env=spec.id))
        assert config.model.num_elites <= config.model.ensemble_size


def test_cartpole_matches_gymnasium_cartpole_at_full_force():
    """Actions +-1 give gymnasium CartPole-v1's +-10 N dynamics, rewards and termination."""
    ours = CartPoleContinuousEnv()
    ref = gym.make("CartPole-v1").unwrapped
    ours.reset(seed=5)
    ref.reset(seed=5)
    ref.state = np.array(ours.state)
    rng = np.random.default_rng(0)
    for _ in range(300):
        push = int(rng.integers(2))
        o1, r1, t1, _, _ = ours.step(np.array([2.0 * push - 1.0], dtype=np.float32))
        o2, r2, t2, _, _ = ref.step(push)
        np.testing.assert_allclose(ours.state, ref.state, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2 and t1 == t2
        if t1:
            ours.reset(seed=int(rng.integers(100)))
            ref.reset()
            ref.state = np.array(ours.state)
            ref.steps_beyond_terminated = None


def test_cartpole_clips_action_and_needs_reset():
    env = CartPoleContinuousEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1))
    env.reset(seed=0)
    s0 = env.state.copy()
    env.step(np.array([5.0]))
    clipped = env.state.copy()
    env.state = s0
    env.step(np.array([1.0]))
    np.testing.assert_array_equal(env.state, clipped)


def test_x_displacement_wrapper_sums_to_position():
    pytest.importorskip("mujoco")
    made = fm.envs.make("HalfCheetah-v5")
    inner = made.env.unwrapped
    obs, _ = made.env.reset(seed=0)
    assert obs[0] == 0.0
    x0 = inner.data.qpos[0]
    total = 0.0
    for _ in range(20):
        obs, *_ = made.env.step(made.env.action_space.sample())
        total += obs[0]
    assert abs((inner.data.qpos[0] - x0) - total) < 1e-10


def test_inverted_pendulum_rail_termination_extends_the_exact_rule():
    from fastmbrl.envs import termination_fns as tf

    rng = np.random.default_rng(0)
    next_obs = rng.uniform(-1.2, 1.2, (2000, 4))
    next_obs[:, 1] = rng.uniform(-0.3, 0.3, 2000)
    obs = np.zeros_like(next_obs)
    act = np.zeros((2000, 1))
    exact = tf.inverted_pendulum(obs, act, next_obs)
    rail = tf.inverted_pendulum_rail(obs, act, next_obs)
    inside = np.abs(next_obs[:, 0]) <= tf.INVERTED_PENDULUM_RAIL_MARGIN
    np.testing.assert_array_equal(rail[inside], exact[inside])
    assert rail[~inside].all() and inside.sum() > 100 and (~inside).sum() > 100
    spec = fm.envs.get_spec("InvertedPendulum-v5")
    assert spec.planning_termination_fn is tf.inverted_pendulum_rail
    assert spec.termination_fn is tf.inverted_pendulum   # the exact rule stays the env's
