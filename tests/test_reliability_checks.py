"""Bad input checked by name before work starts: what user code returns (an env's reward, a
compiled reward function reading past its arrays) and settings the chosen algorithm cannot use."""
import logging

import numpy as np
import pytest
from numba import njit

import fastmbrl as fm
from fastmbrl.config import ConfigError
from tests.algorithms.systems import LinearSystem, linear_reward

TINY_SAC = {"sac": {"hidden": [16, 16], "batch_size": 32, "learning_starts": 20,
                    "eval_every": 40, "eval_episodes": 1}}


class _RewardReturns(LinearSystem):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def step(self, action):
        obs, _, term, trunc, info = super().step(action)
        return obs, self.value, term, trunc, info


@pytest.mark.parametrize("value, kind", [(None, "NoneType"), (np.zeros(2), r"ndarray of shape \(2,\)"),
                                         ("1.5", "str"), (True, "bool"), ([1.0], "list")])
@pytest.mark.parametrize("algorithm", ["sac", "random"])
def test_a_reward_that_is_not_a_real_scalar_is_named(value, kind, algorithm, tmp_path):
    budget = {"steps": 40} if algorithm == "sac" else {"episodes": 1}
    with pytest.raises(TypeError, match=rf"the reward returned by _RewardReturns\.step must be a "
                                        rf"real scalar, got {kind}"):
        fm.run(_RewardReturns(value), algorithm=algorithm, reward_fn=linear_reward,
               config=TINY_SAC, **budget)


@pytest.mark.parametrize("value", [np.float32(-1.5), np.array(-1.5), 2, np.int64(3)])
def test_real_scalars_of_any_numeric_type_are_accepted(value):
    result = fm.run(_RewardReturns(value), algorithm="sac", steps=40, reward_fn=linear_reward,
                    config=TINY_SAC)
    assert result.returns[0] == pytest.approx(20 * float(value))


@njit
def _reads_column_5(obs, act, next_obs):
    out = np.empty(obs.shape[0])
    for i in range(obs.shape[0]):
        out[i] = -next_obs[i, 5]
    return out


@njit
def _terminates_on_column_9(obs, act, next_obs):
    return next_obs[:, 9] > 0


@pytest.mark.parametrize("kw, name", [({"reward_fn": _reads_column_5}, "reward_fn"),
                                      ({"reward_fn": linear_reward,
                                        "termination_fn": _terminates_on_column_9},
                                       "termination_fn")])
def test_a_compiled_function_reading_past_its_arrays_is_named(kw, name, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=rf"{name}: '_\w+' reads outside its arrays on a probe "
                                         r"call with obs \(2, 2\)"):
        fm.run(LinearSystem(), algorithm="mbpo", steps=40, out_dir=out, **kw)
    assert not out.exists()


def test_a_step_based_algorithm_refuses_an_episode_budget():
    with pytest.raises(ValueError, match="episodes: sac counts environment steps"):
        fm.run(LinearSystem(), algorithm="sac", episodes=3, reward_fn=linear_reward)


def test_pets_refuses_fewer_than_two_initial_steps_before_writing(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="algorithm.initial_steps: pets fits its model"):
        fm.run("Pendulum-v1", algorithm="pets", config={"algorithm": {"initial_steps": 1}},
               out_dir=out)
    assert not out.exists()


def test_settings_the_algorithm_does_not_read_are_named_in_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="fastmbrl.run"):
        fm.run(LinearSystem(), algorithm="sac", steps=40, reward_fn=linear_reward,
               config={**TINY_SAC, "planner": {"horizon": 7}, "mbpo": {"rollouts_per_step": 3}})
    assert "sac does not use planner.horizon, mbpo.rollouts_per_step" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fastmbrl.run"):
        fm.run(LinearSystem(), algorithm="sac", steps=40, reward_fn=linear_reward,
               config=TINY_SAC)
    assert "does not use" not in caplog.text
