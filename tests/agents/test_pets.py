"""PETS agent and RandomAgent: bounds, warm start, determinism, time budget, models, bad input."""
import numpy as np
import pytest
from numba import njit

import fastmbrl as fm
from fastmbrl.agents import PETS, RandomAgent
from fastmbrl.planning import CEM, ICEM, MPPI, RandomShooting
from planning_helpers import linear_arrays, random_arrays


@njit(cache=True)
def toward_zero_nb(obs, act, next_obs):
    out = np.empty(obs.shape[0], dtype=obs.dtype)
    for i in range(obs.shape[0]):
        out[i] = -next_obs[i, 0] * next_obs[i, 0] - 0.01 * act[i, 0] * act[i, 0]
    return out


def toward_zero_np(obs, act, next_obs):
    return -next_obs[:, 0] ** 2 - 0.01 * act[:, 0] ** 2


def small_agent(reward_fn=toward_zero_nb, planner=None, **kw):
    arrays = kw.pop("arrays", linear_arrays([0.9, 1.1]))
    planner = planner or CEM(horizon=5, population=60, elite_frac=0.1, iterations=4, seed=0)
    return PETS(arrays, reward_fn, (np.array([-1.0]), np.array([1.0])), planner=planner,
                particles=kw.pop("particles", 4), seed=kw.pop("seed", 0), **kw)


@pytest.mark.parametrize("propagation", ["ts1", "tsinf", "expectation"])
def test_drives_linear_system_to_zero(propagation):
    """next = k obs + act with k ~ 1: the best first action cancels most of the state."""
    agent = small_agent(propagation=propagation)
    a = agent.act(np.array([0.6]))
    assert a.shape == (1,) and a.dtype == np.float32
    assert -0.75 < a[0] < -0.35          # the one-step optimum is about -0.6 (k = 1 on average)
    plan = agent.plan(np.array([-0.6]))
    assert plan.shape == (5, 1)
    assert 0.35 < plan[0, 0] < 0.75


@pytest.mark.parametrize("planner_cls", [RandomShooting, CEM, ICEM, MPPI])
def test_actions_inside_bounds(planner_cls):
    planner = planner_cls(horizon=4, population=40, seed=0)
    agent = PETS(random_arrays(d_obs=3, d_act=2, dtype=np.float32), toward_zero_np,
                 (np.array([-0.3, 0.0]), np.array([0.2, 0.5])), planner=planner, particles=2)
    for k in range(3):
        a = agent.act(np.array([5.0, -3.0, 1.0]) * k)
        assert np.all(a >= np.array([-0.3, 0.0], dtype=np.float32))
        assert np.all(a <= np.array([0.2, 0.5], dtype=np.float32))


def test_numba_and_numpy_reward_give_same_plan():
    plans = []
    for rfn in (toward_zero_nb, toward_zero_np):
        agent = small_agent(rfn, arrays=random_arrays(d_obs=3, d_act=1, seed=2))
        plans.append([agent.plan(np.array([0.5, -0.2, 0.1])) for _ in range(2)])
    np.testing.assert_allclose(plans[0], plans[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_deterministic_under_seed(n_threads):
    runs = []
    for _ in range(2):
        agent = small_agent(arrays=random_arrays(d_obs=3, d_act=1, dtype=np.float32),
                            n_threads=n_threads,
                            planner=CEM(horizon=5, population=60, iterations=3, seed=7))
        runs.append([agent.act(np.array([0.5, -0.2, 0.1])) for _ in range(3)])
        agent.close()
    np.testing.assert_array_equal(runs[0], runs[1])


def test_warm_start_shifts_previous_plan():
    seen = []

    class Recorder(CEM):
        def optimize(self, objective, lower, upper, init_mean=None, time_budget=None):
            seen.append(None if init_mean is None else init_mean.copy())
            return super().optimize(objective, lower, upper, init_mean, time_budget)

    agent = small_agent(planner=Recorder(horizon=5, population=30, iterations=2, seed=0))
    p1 = agent.plan(np.array([0.3]))
    agent.plan(np.array([0.1]))
    assert seen[0] is None
    np.testing.assert_array_equal(seen[1][:-1], p1[1:])
    assert seen[1][-1, 0] == 0.0              # the middle of [-1, 1]
    agent.reset()
    agent.plan(np.array([0.1]))
    assert seen[2] is None
    cold = small_agent(planner=Recorder(horizon=5, population=30, iterations=2, seed=0),
                       warm_start=False)
    cold.plan(np.array([0.3]))
    cold.plan(np.array([0.3]))
    assert seen[3] is None and seen[4] is None


def test_time_budget_counts_iterations():
    """The planner stops before an iteration that would pass the budget (clock: objective calls)."""
    agent = small_agent(planner=CEM(horizon=5, population=30, iterations=10, seed=0))
    agent.planner.clock = lambda: float(agent.rollout.n_calls)
    agent.act(np.array([0.3]), time_budget=4.5)
    assert agent.planner.last_iterations == 4
    agent.act(np.array([0.3]), time_budget=100.0)
    assert agent.planner.last_iterations == 10
    agent.act(np.array([0.3]))
    assert agent.planner.last_iterations == 10


def test_model_arrays_refreshed_each_act():
    class Model:
        def __init__(self):
            self.calls = 0
            self.current = linear_arrays([1.0])

        def arrays(self):
            self.calls += 1
            return self.current

    model = Model()
    agent = PETS(model, toward_zero_nb, (np.array([-1.0]), np.array([1.0])),
                 planner=CEM(horizon=3, population=40, iterations=3, seed=0), particles=1,
                 propagation="expectation")
    n0 = model.calls
    a1 = agent.act(np.array([0.5]))
    model.current = linear_arrays([-1.0])   # "refitted": the state now flips sign
    a2 = agent.act(np.array([0.5]))
    assert model.calls == n0 + 2
    assert a1[0] < -0.3 and a2[0] > 0.3


def test_only_elite_members_used():
    arrays = linear_arrays([0.0, 5.0])._replace(members=np.array([0]))
    agent = PETS(arrays, toward_zero_nb, (np.array([-1.0]), np.array([1.0])),
                 planner=CEM(horizon=1, population=50, iterations=5, seed=0), particles=4)
    # with member 0 alone, next = act, so the best action is 0 whatever the state
    assert abs(agent.act(np.array([0.8]))[0]) < 0.05


def test_learned_reward_when_reward_fn_none():
    arrays = linear_arrays([1.0], has_reward=True)   # reward head: the current obs
    agent = PETS(arrays, None, (np.array([-1.0]), np.array([1.0])),
                 planner=CEM(horizon=3, population=60, iterations=4, seed=0), particles=2,
                 propagation="expectation")
    # rewards obs_0 + obs_1 + obs_2 with obs_{t+1} = obs_t + a_t: push up as hard as possible
    assert agent.act(np.array([0.0]))[0] > 0.8


def test_with_gaussian_ensemble():
    model = fm.models.GaussianEnsemble(3, 1, hidden=(8, 8), ensemble_size=3, num_elites=2, seed=0)
    agent = PETS(model, toward_zero_np, (np.array([-2.0]), np.array([2.0])),
                 planner=CEM(horizon=3, population=20, iterations=2, seed=0), particles=2)
    a = agent.act(np.array([0.1, 0.2, 0.3]))
    assert a.shape == (1,) and np.all(np.abs(a) <= 2.0)


def test_auto_threads():
    big = PETS(linear_arrays([1.0]), toward_zero_nb, (np.array([-1.0]), np.array([1.0])),
               planner=CEM(horizon=3, population=350), particles=20)
    small = PETS(linear_arrays([1.0]), toward_zero_nb, (np.array([-1.0]), np.array([1.0])),
                 planner=CEM(horizon=3, population=100), particles=5)
    assert small.n_threads == 1
    assert big.n_threads == (2 if (__import__("os").cpu_count() or 1) >= 2 else 1)
    big.close()


def test_pets_bad_input():
    agent = small_agent()
    with pytest.raises(ValueError, match="obs"):
        agent.act(np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="obs"):
        agent.act(np.array([np.nan]))
    with pytest.raises(ValueError, match="time_budget"):
        agent.act(np.array([0.1]), time_budget=0.0)
    with pytest.raises(ValueError, match="propagation"):
        small_agent(propagation="ts")
    with pytest.raises(ValueError, match="low <= high"):
        PETS(linear_arrays([1.0]), toward_zero_nb, (np.array([1.0]), np.array([-1.0])))
    with pytest.raises(ValueError, match="non-finite"):
        PETS(linear_arrays([1.0]), toward_zero_nb, (np.array([-np.inf]), np.array([1.0])))
    with pytest.raises(ValueError, match="action"):
        PETS(linear_arrays([1.0]), toward_zero_nb, (np.zeros(2), np.ones(2)))
    with pytest.raises(TypeError, match="model"):
        PETS(object(), toward_zero_nb, (np.array([-1.0]), np.array([1.0])))
    with pytest.raises(TypeError, match="action_space"):
        PETS(linear_arrays([1.0]), toward_zero_nb, "box")


def test_random_agent():
    space = (np.array([-1.0, 0.0]), np.array([1.0, 0.1]))
    a = RandomAgent(space, seed=0)
    acts = np.array([a.act(None) for _ in range(200)])
    assert acts.shape == (200, 2) and acts.dtype == np.float32
    assert np.all(acts >= [-1.0, 0.0]) and np.all(acts <= [1.0, 0.1])
    assert acts[:, 0].std() > 0.4                     # spread over the box
    b = RandomAgent(space, seed=0)
    np.testing.assert_array_equal(acts, [b.act(None) for _ in range(200)])
    a.reset()


def test_random_agent_gymnasium_box():
    import gymnasium as gym  # a runtime dependency: missing it must fail, not skip
    space = gym.spaces.Box(-2.0, 2.0, shape=(3,), dtype=np.float64)
    a = RandomAgent(space, seed=1).act(np.zeros(4))
    assert a.shape == (3,) and a.dtype == np.float64 and np.all(np.abs(a) <= 2.0)
