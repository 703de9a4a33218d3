"""Time budgets that hold inside an iteration: partial populations, fallbacks, non-finite values.

Deterministic: the clocks are fake (they advance when candidates are scored), so no assertion
depends on the machine's speed.
"""
import warnings

import numpy as np
import pytest

from fastmbrl.agents import PETS
from fastmbrl.planning import CEM, ICEM, MPPI, RandomShooting, check_bounds
from fastmbrl.planning import _deadline, _schedule
from fastmbrl.planning.rollout import ModelRollout
from planning_helpers import linear_arrays, random_arrays

TARGET = np.array([[0.3, -0.5], [0.7, 0.1], [-0.2, 0.4]])   # (H=3, A=2)
LO, HI = -np.ones(2), np.ones(2)


def quadratic(samples):
    return -((samples - TARGET) ** 2).sum(axis=(1, 2))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class CutObjective:
    """Scores candidates one at a time, each costing one unit of the fake clock."""

    def __init__(self, clock, fn=quadratic):
        self.clock = clock
        self.fn = fn
        self.seen = []          # (samples, n scored) per call

    def __call__(self, samples):
        self.seen.append((samples.copy(), samples.shape[0]))
        return self.fn(samples)

    def evaluate_until(self, samples, deadline, clock):
        values = np.full(samples.shape[0], np.nan)
        n = 0
        while n < samples.shape[0] and clock() + 1.0 <= deadline:
            values[n] = self.fn(samples[n:n + 1])[0]
            self.clock.now += 1.0
            n += 1
        self.seen.append((samples.copy(), n))
        return values, n


def run(opt, budget, init_mean=None, fn=quadratic):
    clock = FakeClock()
    opt.clock = clock
    obj = CutObjective(clock, fn)
    plan = opt.optimize(obj, LO, HI, init_mean=init_mean, time_budget=budget)
    return plan, obj


def test_random_shooting_best_of_the_scored_only():
    opt = RandomShooting(horizon=3, population=50, iterations=3, seed=0)
    plan, obj = run(opt, 7.5)
    samples, n = obj.seen[0]
    assert len(obj.seen) == 1 and n == 7
    scored = samples[:7]
    np.testing.assert_array_equal(plan, scored[np.argmax(quadratic(scored))])
    # the unscored members include better ones (the best of all 50 is not the answer)
    assert quadratic(samples).max() > quadratic(scored).max()
    info = opt.last_info
    assert info == {"n_evaluated": 7, "population": 50, "n_finite": 7, "iterations_done": 1,
                    "budget_cut": True, "fallback": None, "fallback_reason": None,
                    "cut_by": "candidates", "n_aborted": 0}


def test_cem_refits_to_the_scored_members_by_hand():
    opt = CEM(horizon=3, population=40, elite_frac=0.1, iterations=3, alpha=0.25, seed=1)
    plan, obj = run(opt, 9.5)
    samples, n = obj.seen[0]
    assert n == 9 and opt.last_info["budget_cut"]
    scored = samples[:9]
    elites = scored[np.argsort(-quadratic(scored))[:4]]       # n_elites = round(0.1 * 40) = 4
    mean0 = np.zeros((3, 2))
    want = 0.25 * mean0 + 0.75 * elites.mean(axis=0)
    np.testing.assert_allclose(plan, want, rtol=1e-12, atol=1e-12)


def test_cem_fewer_scored_than_elites_refits_to_those():
    opt = CEM(horizon=3, population=40, elite_frac=0.25, iterations=2, alpha=0.5, seed=2)
    plan, obj = run(opt, 3.0)                               # 3 scored, 10 elites wanted
    samples, n = obj.seen[0]
    assert n == 3
    np.testing.assert_allclose(plan, 0.5 * samples[:3].mean(axis=0), rtol=1e-12, atol=1e-12)


def test_mppi_weights_only_the_scored_members_by_hand():
    opt = MPPI(horizon=3, population=30, iterations=2, temperature=0.5, noise_std=0.3, seed=3)
    plan, obj = run(opt, 5.0)
    samples, n = obj.seen[0]
    assert n == 5
    v = quadratic(samples[:5])
    w = np.exp((v - v.max()) / 0.5)
    w /= w.sum()
    want = np.tensordot(w, samples[:5], axes=1)             # U0 = 0: U + sum w (V - U)
    np.testing.assert_allclose(plan, want, rtol=1e-12, atol=1e-12)


def test_icem_scores_carried_elites_first_and_keeps_scored_elites():
    opt = ICEM(horizon=3, population=30, elite_frac=0.2, iterations=2, keep_elites_frac=0.5,
               noise_beta=0.0, seed=4)
    run(opt, 1000.0)                                         # a full call leaves kept elites
    kept = opt._kept.copy()
    assert kept.shape == (3, 3, 2)
    plan, obj = run(opt, 4.5)
    samples, n = obj.seen[0]
    assert n == 4
    # under a budget the shifted elites come first
    np.testing.assert_array_equal(samples[:3, :-1], kept[:, 1:])
    scored = samples[:4]
    np.testing.assert_array_equal(plan, scored[np.argmax(quadratic(scored))])
    order = np.argsort(-quadratic(scored), kind="stable")[:4]
    np.testing.assert_array_equal(opt._kept, scored[order][:3])   # round(0.5 * 6) of the 4


@pytest.mark.parametrize("cls", [RandomShooting, CEM, ICEM, MPPI])
def test_nothing_scored_returns_the_fallback(cls):
    opt = cls(horizon=3, population=20, iterations=2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # a budget cut is no warning
        plan, obj = run(opt, 0.5)
    assert obj.seen[0][1] == 0
    np.testing.assert_array_equal(plan, np.zeros((3, 2)))    # the middle of [-1, 1]
    assert opt.last_info["fallback"] == "middle" and opt.last_info["n_evaluated"] == 0
    init = np.full((3, 2), 0.25)
    plan, _ = run(opt, 0.5, init_mean=init)
    np.testing.assert_array_equal(plan, init)
    assert opt.last_info["fallback"] == "init_mean" and opt.last_info["budget_cut"]


@pytest.mark.parametrize("cls", [RandomShooting, CEM, ICEM, MPPI])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_values_non_finite_warns_and_falls_back(cls, bad):
    opt = cls(horizon=3, population=20, iterations=2, seed=0)
    init = np.full((3, 2), -0.5)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        plan = opt.optimize(lambda s: np.full(s.shape[0], bad), LO, HI, init_mean=init)
    np.testing.assert_array_equal(plan, init)
    assert opt.last_info["fallback"] == "init_mean" and opt.last_info["n_finite"] == 0
    with pytest.warns(RuntimeWarning):
        plan = opt.optimize(lambda s: np.full(s.shape[0], bad), LO, HI)
    assert np.all(np.isfinite(plan)) and np.all(plan == 0.0)


@pytest.mark.parametrize("cls", [RandomShooting, CEM, ICEM, MPPI])
def test_some_values_non_finite_are_ignored(cls):
    """+inf (an overflowing reward) must not win, NaN must not be an elite."""
    def poisoned(samples):
        v = quadratic(samples)
        v[samples[:, 0, 0] > 0.5] = np.inf
        v[samples[:, 0, 0] < -0.5] = np.nan
        return v

    opt = cls(horizon=3, population=400, iterations=4, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = opt.optimize(poisoned, LO, HI)
    assert np.all(np.isfinite(plan))
    assert -0.5 <= plan[0, 0] <= 0.5
    assert opt.last_info["fallback"] is None
    assert 0 < opt.last_info["n_finite"] < opt.last_info["n_evaluated"]


def test_cem_elites_exclude_non_finite_by_hand():
    def mostly_nan(samples):
        v = quadratic(samples)
        v[2:] = np.nan                                   # only two valid members, 4 elites
        return v

    seen = []
    opt = CEM(horizon=3, population=20, elite_frac=0.2, iterations=1, alpha=0.5, seed=5)
    plan = opt.optimize(lambda s: (seen.append(s.copy()), mostly_nan(s))[1], LO, HI)
    np.testing.assert_allclose(plan, 0.5 * seen[0][:2].mean(axis=0), rtol=1e-12, atol=1e-12)


def test_overflowing_bounds_refused():
    with pytest.raises(ValueError, match="overflows"):
        check_bounds(np.array([-1e308]), np.array([1e308]), 3)
    with pytest.raises(ValueError, match="overflows"):
        PETS(linear_arrays([1.0]), lambda o, a, n: -n[:, 0], (np.array([-1e308]),
                                                               np.array([1e308])))
    # huge but finite widths are fine
    lo, hi = check_bounds(np.array([-1e300]), np.array([1e300]), 2)
    assert np.all(np.isfinite(hi - lo))


# ------------------------------------------------------------------ the rollout under a deadline
def ticking_clock():
    """A clock advancing one unit per reading: deadlines in units of clock reads."""
    state = {"t": 0.0}

    def clock():
        state["t"] += 1.0
        return state["t"]
    return clock


@pytest.mark.parametrize("n_threads", [1, 2])
def test_rollout_deadline_scores_a_prefix(monkeypatch, n_threads):
    monkeypatch.setattr(_deadline, "STEP_SECONDS", 1e-12)   # one candidate per chunk
    ro = ModelRollout(lambda o, a, n: -n[:, 0] ** 2, particles=3, seed=0, n_threads=n_threads)
    f = ro.objective(random_arrays(d_obs=3, d_act=1, dtype=np.float64), np.zeros(3))
    acts = np.random.default_rng(0).uniform(-1, 1, (12, 4, 1))
    clock = ticking_clock()
    values, n, n_aborted = f.evaluate_until(acts, 7.5, clock)
    # with two threads the worker's chunk may be running when the caller stops: left behind
    assert (1 if n_threads == 1 else 0) <= n < 12 and n + n_aborted < 12
    assert np.all(np.isfinite(values[:n])) and np.all(np.isnan(values[n:]))
    values, n, n_aborted = f.evaluate_until(acts, -1.0, clock)        # already past
    assert n == 0 and n_aborted == 0 and np.all(np.isnan(values))
    ro.close()


def test_rollout_deadline_far_away_scores_all_like_a_plain_call(monkeypatch):
    monkeypatch.setattr(_deadline, "STEP_SECONDS", 1e-12)   # one candidate per chunk
    ro = ModelRollout(lambda o, a, n: -n[:, 0] ** 2, particles=1, propagation="expectation",
                      seed=0)
    f = ro.objective(random_arrays(d_obs=3, d_act=1, dtype=np.float64), np.zeros(3))
    acts = np.random.default_rng(1).uniform(-1, 1, (40, 4, 1))
    values, n, _ = f.evaluate_until(acts, np.inf, ticking_clock())
    assert n == 40
    np.testing.assert_allclose(values, f(acts), rtol=1e-12, atol=1e-12)


def test_deadline_calls_leave_the_plain_streams_alone():
    """Calls without a deadline give the same values whether deadline calls came in between."""
    arrays = random_arrays(d_obs=3, d_act=1, dtype=np.float64)
    acts = np.random.default_rng(2).uniform(-1, 1, (30, 4, 1))
    out = []
    for interleave in (False, True):
        ro = ModelRollout(lambda o, a, n: -n[:, 0] ** 2, particles=4, seed=3)
        f = ro.objective(arrays, np.zeros(3))
        first = f(acts)
        if interleave:
            f.evaluate_until(acts, np.inf, ticking_clock())
        out.append((first, f(acts)))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


# ------------------------------------------------------------------ the agent
def reward_ticking(clock):
    def reward(obs, act, next_obs):          # a plain function: called once per chunk
        clock.now += 1.0
        return -next_obs[:, 0] ** 2
    return reward


@pytest.mark.parametrize("cls", [RandomShooting, CEM, ICEM, MPPI])
def test_agent_budget_cuts_inside_the_first_iteration(monkeypatch, cls):
    monkeypatch.setattr(_deadline, "STEP_SECONDS", 1e-12)
    clock = FakeClock()
    planner = cls(horizon=4, population=30, iterations=3, seed=0)
    agent = PETS(linear_arrays([0.9, 1.1]), reward_ticking(clock), (np.array([-1.0]),
                                                                    np.array([1.0])),
                 planner=planner, particles=2, seed=0)
    planner.clock = clock
    a = agent.act(np.array([0.5]), time_budget=5.5)
    info = agent.last_plan_info
    assert 1 <= info["n_evaluated"] <= 6 and info["budget_cut"] and info["iterations_done"] == 1
    assert info["fallback"] is None and info["elapsed"] >= 0 and np.all(np.abs(a) <= 1)
    agent.act(np.array([0.5]))
    full = agent.last_plan_info
    assert not full["budget_cut"] and full["n_evaluated"] == full["population"] >= 3 * 30 - 30


def test_agent_shifted_fallback_when_nothing_fits(monkeypatch):
    clock = FakeClock()
    planner = CEM(horizon=4, population=30, iterations=3, seed=0)
    agent = PETS(linear_arrays([0.9, 1.1]), reward_ticking(clock), (np.array([-1.0]),
                                                                    np.array([3.0])),
                 planner=planner, particles=2, seed=0)
    planner.clock = ticking_clock()             # every reading is a unit later: nothing fits
    first = agent.plan(np.array([0.5]), time_budget=0.5)
    np.testing.assert_array_equal(first, np.ones((4, 1)))      # the middle of [-1, 3]
    assert agent.last_plan_info["fallback"] == "middle"
    planner.clock = FakeClock()                 # a frozen clock: everything fits
    full = agent.plan(np.array([0.5]), time_budget=10.0)
    planner.clock = ticking_clock()
    shifted = agent.plan(np.array([0.5]), time_budget=0.5)
    np.testing.assert_array_equal(shifted[:-1], full[1:])
    assert shifted[-1, 0] == 1.0 and agent.last_plan_info["fallback"] == "shifted"
    again = agent.plan(np.array([0.5]), time_budget=0.5, shift=2)
    np.testing.assert_array_equal(again[:-2], shifted[2:])
    np.testing.assert_array_equal(again[-2:], np.ones((2, 1)))


def test_agent_all_non_finite_warns_and_never_returns_nan():
    agent = PETS(linear_arrays([1.0]), lambda o, a, n: np.full(o.shape[0], np.nan),
                 (np.array([-1.0]), np.array([1.0])),
                 planner=CEM(horizon=4, population=20, iterations=2, seed=0), particles=2)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        a = agent.act(np.array([0.2]))
    assert np.all(np.isfinite(a)) and a[0] == 0.0
    assert agent.last_plan_info["fallback"] == "middle"
    with pytest.warns(RuntimeWarning):
        agent.plan(np.array([0.2]))
    assert agent.last_plan_info["fallback"] == "shifted"
