"""The mve and svg presets and the model-based switches of MBPO's loop: tiny end-to-end runs of
every combination with and without Dyna data, the presets' settings, and bad settings."""
import copy

import numpy as np
import pytest

import fastmbrl as fm
from fastmbrl.algorithms import available, mbpo, mve, svg
from fastmbrl.config import ConfigError, RunConfig
from tests.algorithms.systems import LinearSystem, linear_reward
from tests.algorithms.test_mbpo import TINY, EscapeSystem

SMALL = copy.deepcopy(TINY)
SMALL["sac"]["hidden"] = [16, 16]
SMALL["mbpo"]["updates_per_step"] = 2
SMALL["mbpo"]["real_ratio"] = 0.5
SMALL["model"]["learn_reward"] = True    # linear_reward has no gradient: SVG uses the reward head


def run_small(algorithm, mbpo_changes=(), env=None, steps=120):
    cfg = copy.deepcopy(SMALL)
    cfg["mbpo"].update(dict(mbpo_changes))
    return fm.run(LinearSystem() if env is None else env, algorithm=algorithm, steps=steps,
                  reward_fn=linear_reward, config=cfg, seed=0)


def test_presets_are_registered_and_set_their_switches():
    assert {"mve", "svg"} <= set(available())
    base = RunConfig()
    m = mve.preset(base).mbpo
    assert (m.dyna_rollouts, m.real_ratio, m.critic_horizon, m.actor_horizon) == (False, 1.0, 3, 0)
    s = svg.preset(base).mbpo
    assert (s.dyna_rollouts, s.real_ratio, s.critic_horizon, s.actor_horizon) == \
        (True, base.mbpo.real_ratio, 1, 3)
    assert not mbpo._model_based(base.mbpo)          # defaults: MBPO exactly as before


def _updated(result):
    agent = result.agent
    assert np.all(np.isfinite(agent.actor)) and np.all(np.isfinite(agent.critic))
    # Adam counts of critic, actor, temperature: one per update, and updates did run
    assert agent.steps[0] > 0 and agent.steps[0] == agent.steps[1] == agent.steps[2]


@pytest.mark.parametrize("algorithm,changes", [
    ("mve", {}),
    ("mve", {"td_k": True}),                                      # MVE with the TD-k trick
    ("mve", {"critic_horizon": 2, "actor_horizon": 2}),           # MVE + SVG, no Dyna data
    ("svg", {}),
    ("svg", {"actor_grad_clip": 1.0, "critic_horizon": 2}),       # SVG + MVE + Dyna
    ("svg", {"critic_horizon": 3, "td_k": True}),                 # SVG + MVE/TD-k + Dyna
    ("mbpo", {"actor_horizon": 2}),                               # MBPO + SVG
    ("mbpo", {"critic_horizon": 3}),                              # MBPO + MVE
    ("mbpo", {"dyna_rollouts": False}),                           # SAC updates on real data only
])
def test_every_combination_runs(algorithm, changes):
    result = run_small(algorithm, changes)
    assert result.records
    _updated(result)
    dyna = result.config.mbpo.dyna_rollouts
    assert (len(result.model_buffer) > 0) == dyna
    if algorithm == "mve":
        assert result.config.mbpo.critic_horizon >= 2 and result.config.mbpo.real_ratio == 1.0


def test_terminations_with_model_based_updates():
    """The run's model-based updates with EscapeSystem's termination, and what the termination
    does in them: a model row that leaves the disc stops contributing. Its MVE target and its SVG
    actor loss and gradient stay bit for bit the same when the critics change (nothing after the
    termination is used), while those of a row that stays inside change."""
    from fastmbrl.agents._mb_grads import ModelNoise, mve_critic_target, svg_actor_loss_grad
    from fastmbrl.models import ModelEnv

    cfg = copy.deepcopy(SMALL)
    cfg["mbpo"].update({"critic_horizon": 3, "actor_horizon": 2})

    def outside(obs, act, next_obs):
        return next_obs[:, 0] ** 2 + next_obs[:, 1] ** 2 > 1.44

    result = fm.run(EscapeSystem(), algorithm="mbpo", steps=120, reward_fn=linear_reward,
                    termination_fn=outside, config=cfg, seed=0)
    _updated(result)
    assert result.buffer.terminated.any() and result.model_buffer.buffer.terminated.any()

    agent = result.agent
    dt = agent.dtype
    menv = ModelEnv(result.model, reward_fn=linear_reward, termination_fn=outside)
    # rows 0, 1 stay inside for the whole horizon (a step moves at most 0.2 * sqrt(2)); rows 2, 3
    # start far outside, so their first model step terminates whatever the action
    states = np.array([[0.0, 0.0], [0.1, -0.1], [2.5, 0.0], [0.0, -2.5]], dt)
    B, n = states.shape[0], 3
    rng = np.random.default_rng(0)
    noise = ModelNoise(rng.standard_normal((n, B, agent.act_dim)).astype(dt),
                       np.zeros((n - 1, B, menv.out_dim), dt), np.zeros((n - 1, B), np.int64))
    # the model itself says so: rows 2, 3 leave the disc at once, rows 0, 1 never do
    acts = np.clip(noise.act[0], -1.0, 1.0)
    nxt, _, done = menv.step(states, acts, noise=0, members=np.zeros(B, np.int64))
    assert done.tolist() == [False, False, True, True], nxt

    alpha = agent.temperature
    shifted = agent.critic_target + dt(0.5)          # other critics: other values of Q
    reward, terminated = np.full(B, -1.0, dt), np.zeros(B, bool)
    y = mve_critic_target(agent, menv, reward, states, terminated, n, noise, alpha)
    y_other = mve_critic_target(agent, menv, reward, states, terminated, n, noise, alpha,
                                target=shifted)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(y_other))
    np.testing.assert_array_equal(y[2:], y_other[2:])
    assert np.all(np.abs(y[:2] - y_other[:2]) > 1e-3), (y, y_other)

    for row in range(B):
        one = ModelNoise(noise.act[:, row:row + 1], noise.model[:, row:row + 1],
                         noise.members[:, row:row + 1])
        obs = np.ascontiguousarray(states[row:row + 1])
        grads, losses = [], []
        for critic in (agent.critic, agent.critic + dt(0.5)):
            g = np.empty_like(agent.actor)
            losses.append(svg_actor_loss_grad(agent, menv, obs, 2, one, alpha, g,
                                              critic=critic)[0])
            grads.append(g)
        if row >= 2:
            assert losses[0] == losses[1]
            np.testing.assert_array_equal(grads[0], grads[1])
        else:
            assert abs(losses[0] - losses[1]) > 1e-3, (row, losses)


@pytest.mark.parametrize("key,value", [("critic_horizon", 0), ("actor_horizon", -1),
                                       ("actor_grad_clip", -1.0)])
def test_bad_switches_are_refused(key, value):
    cfg = copy.deepcopy(SMALL)
    cfg["mbpo"][key] = value
    with pytest.raises((ConfigError, ValueError), match=key):
        fm.run(LinearSystem(), algorithm="mbpo", steps=10, reward_fn=linear_reward, config=cfg)


def test_svg_without_reward_gradient_is_refused():
    cfg = copy.deepcopy(SMALL)
    cfg["model"]["learn_reward"] = False
    with pytest.raises(ConfigError, match="actor_horizon"):
        fm.run(LinearSystem(), algorithm="svg", steps=10, reward_fn=linear_reward, config=cfg)
