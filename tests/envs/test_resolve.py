"""fastmbrl.envs.resolve: ids, gymnasium ids and Env objects with the functions planning needs."""
import gymnasium as gym
import numpy as np
import pytest

from fastmbrl import envs
from tests.algorithms.systems import LinearSystem, linear_reward


def test_spec_id_gets_the_spec_functions_and_time_limit():
    r = envs.resolve("Pendulum-v1")
    spec = envs.get_spec("Pendulum-v1")
    assert r.env_id == "Pendulum-v1" and r.spec is spec
    assert r.reward_fn is spec.reward_fn and r.angle_dims == tuple(spec.angle_dims)
    assert (r.obs_dim, r.act_dim, r.time_limit) == (3, 1, 200)


def test_env_object_needs_a_reward_fn_and_may_have_no_limit():
    with pytest.raises(ValueError, match="reward_fn: required"):
        envs.resolve(LinearSystem())
    r = envs.resolve(LinearSystem(), reward_fn=linear_reward, angle_dims=[1])
    assert r.env_id == "LinearSystem" and r.spec is None and r.time_limit is None
    assert r.angle_dims == (1,) and r.termination_fn is None


def test_gymnasium_id_with_reward_fn_and_bad_input():
    r = envs.resolve("InvertedDoublePendulum-v5", reward_fn=linear_reward)   # no fastmbrl spec
    assert r.time_limit == 1000 and r.spec is None and r.env_id == "InvertedDoublePendulum-v5"
    with pytest.raises(envs.UnknownEnvError, match="Nope-v0"):
        envs.resolve("Nope-v0")
    with pytest.raises(TypeError, match="env: expected"):
        envs.resolve(3)

    class Discrete(LinearSystem):
        def __init__(self):
            super().__init__()
            self.action_space = gym.spaces.Discrete(3)

    with pytest.raises(ValueError, match="1-D Box action_space"):
        envs.resolve(Discrete(), reward_fn=linear_reward)

    class Unbounded(LinearSystem):
        def __init__(self):
            super().__init__()
            self.action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    with pytest.raises(ValueError, match="finite bounds"):
        envs.resolve(Unbounded(), reward_fn=linear_reward)
