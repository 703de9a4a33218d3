"""The deadline machinery: chunk costs, stalls, the alarm, the chunk scheduler and the refusals of a
budget too small, with fake clocks (no assertion depends on the machine's speed).
"""
import itertools
import threading
import time

import numpy as np
import pytest

from fastmbrl.agents import PETS
from fastmbrl.planning import CEM, ICEM, MPPI, RandomShooting
from fastmbrl.planning import _deadline
from fastmbrl.planning._deadline import (ALARM, LOAD_ALLOWANCE, STALL_COUNT, STALL_WINDOW,
                                         ChunkCosts, Stalls)
from fastmbrl.planning._schedule import ChunkThreads
from fastmbrl.planning.rollout import ModelRollout
from planning_helpers import linear_arrays, random_arrays

LO, HI = -np.ones(2), np.ones(2)


class FakeClock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


def measured_costs(horizon=10, per_candidate=1.0, sizes=(1,)):
    """ChunkCosts whose sizes cost ``per_candidate`` per candidate (margin included)."""
    costs = ChunkCosts(horizon, prior_per_candidate=1e-9)
    for n in sizes:
        costs.record(n, n * per_candidate / (1.0 + _deadline.COST_MARGIN))
    return costs


def never_measured():
    """A ``disturbances`` counter that always moves: no chunk's (real) time is recorded."""
    return itertools.count().__next__


# ------------------------------------------------------------------ ChunkCosts
def test_costs_before_any_measurement_try_one_candidate_on_the_prior():
    costs = ChunkCosts(horizon=5, prior_per_candidate=2.0)
    assert not costs.measured and costs.estimate(4) == 8.0
    assert costs.unit() == (2.0, 0.4)
    assert costs.pick(100, 3.0) == 1 and costs.pick(100, 1.9) == 0


def test_costs_bound_the_sizes_not_measured_by_the_measured_ones():
    costs = ChunkCosts(horizon=10, prior_per_candidate=1e-9)
    costs.record(4, 2.0)
    costs.record(16, 4.0)
    m = 1.0 + _deadline.COST_MARGIN
    # smaller than a measured size: at most its cost; larger: at most proportionally more
    assert costs.estimate(2) == pytest.approx(2.0 * m)
    assert costs.estimate(8) == pytest.approx(4.0 * m)             # min(2 * 2.0, 4.0) * m
    assert costs.estimate(64) == pytest.approx(16.0 * m)           # min(16 * 2.0, 4 * 4.0) * m
    assert costs.estimate(16) == pytest.approx(4.0 * m)


def test_costs_median_of_recent_times_and_stopped_chunks_scaled_to_the_horizon():
    costs = ChunkCosts(horizon=10, prior_per_candidate=1e-9)
    for t in (1.0, 9.0, 2.0):
        costs.record(1, t)
    assert costs.estimate(1) == pytest.approx(2.0 * (1.0 + _deadline.COST_MARGIN))
    costs = ChunkCosts(horizon=10, prior_per_candidate=1e-9)
    costs.record(1, 0.5, steps=5)                 # stopped half way: the whole would be 1.0
    assert costs.estimate(1) == pytest.approx(1.0 * (1.0 + _deadline.COST_MARGIN))
    costs.record(2, 0.3, steps=0)                 # stopped before its first step: nothing
    assert costs.estimate(2) == pytest.approx(2.0 * (1.0 + _deadline.COST_MARGIN))


def test_costs_pick_the_largest_power_of_two_that_fits():
    costs = measured_costs(horizon=10 ** 6, per_candidate=1.0)       # no step limit here
    assert costs.pick(100, 7.5) == 4            # 4 fits in 7.5, 8 does not
    assert costs.pick(3, 7.5) == 2              # no more than the candidates left
    assert costs.pick(100, 0.5) == 0            # not even one
    assert costs.pick(100, 7.5, n_threads=2) == 4
    assert costs.pick(6, 100.0, n_threads=2) == 4 and costs.pick(6, 100.0) == 4
    assert costs.pick(40, 100.0, n_threads=2) == 32                   # about half of 40
    assert costs.pick(100, 1000.0) == 64 and costs.pick(100, 1000.0, n_threads=2) == 64


def test_costs_pick_keeps_one_model_step_under_the_step_target(monkeypatch):
    monkeypatch.setattr(_deadline, "STEP_SECONDS", 0.25)
    costs = measured_costs(horizon=10, per_candidate=1.0)             # a step: n / 10 s
    assert costs.pick(100, 1000.0) == 2                                # 0.2 s per step
    monkeypatch.setattr(_deadline, "STEP_SECONDS", 1e-9)
    assert costs.pick(100, 1000.0) == 1                                # one candidate at least


def test_costs_relax_halfway_towards_the_best_time_never_below():
    costs = ChunkCosts(horizon=10, prior_per_candidate=1e-9)
    for t in (1.0, 9.0, 9.0):
        costs.record(1, t)
    m = 1.0 + _deadline.COST_MARGIN
    assert costs.estimate(1) == pytest.approx(9.0 * m)
    costs.relax()
    assert costs.estimate(1) == pytest.approx(5.0 * m)
    for _ in range(60):
        costs.relax()
    assert costs.estimate(1) == pytest.approx(1.0 * m)


# ------------------------------------------------------------------ Stalls
def test_stalls_reserve_the_longest_recent_stall_less_the_allowance():
    stalls = Stalls(measures=True)
    assert stalls.reserve() == 0.0
    stalls.record(wall=1.0003, cpu=1.0)               # under STALL_MIN: not a stall
    stalls.record(wall=0.005, cpu=0.001)              # 4 ms off the CPU
    stalls.record(wall=0.003, cpu=0.001)
    assert stalls.reserve() == 0.0                    # two stalls: a hiccup, no reserve
    stalls.record(wall=0.0035, cpu=0.001)
    assert STALL_COUNT == 3 and stalls.reserve() == pytest.approx(0.004 - LOAD_ALLOWANCE)
    coarse = Stalls(measures=False)
    for _ in range(5):
        coarse.record(wall=1.0, cpu=0.0)
    assert coarse.reserve() == 0.0


def test_stalls_reserve_expires_with_calls_that_ran_nothing():
    stalls = Stalls(measures=True)
    for _ in range(3):
        stalls.record(wall=0.005, cpu=0.0)
    for _ in range(STALL_WINDOW - 3):
        stalls.idle()
    assert stalls.reserve() > 0                       # the three stalls are still in the window
    stalls.idle()
    assert stalls.reserve() == 0.0                    # one left it: fewer than STALL_COUNT
    stalls.idle()
    stalls.idle()                                     # none left
    stalls.record(wall=0.006, cpu=0.0)                # the load went on: back at once
    assert stalls.reserve() == pytest.approx(0.006 - LOAD_ALLOWANCE)
    for _ in range(STALL_WINDOW):
        stalls.idle()
    assert stalls.reserve() == 0.0
    for _ in range(STALL_WINDOW):
        stalls.idle()
    stalls.record(wall=0.006, cpu=0.0)                # long after: a hiccup again
    assert stalls.reserve() == 0.0


# ------------------------------------------------------------------ the alarm
def test_alarm_raises_a_flag_whose_time_has_come_and_not_a_later_one():
    late, due = np.zeros(1, np.uint8), np.zeros(1, np.uint8)
    ALARM.arm(time.perf_counter() + 1e6, late)
    ALARM.arm(time.perf_counter() - 1.0, due)
    for _ in range(10000):                      # a liveness check: up to 10 s for the thread
        if due[0]:
            break
        time.sleep(1e-3)
    assert due[0] == 1 and late[0] == 0


# ------------------------------------------------------------------ the chunk scheduler
def run_until(n_cand, deadline, clock, costs, run, n_threads=1, stalls=None, stop=None):
    threads = ChunkThreads()
    stop = np.zeros(1, np.uint8) if stop is None else stop
    try:
        out = threads.run_until(n_cand, deadline, clock, costs,
                                Stalls(measures=False) if stalls is None else stalls, run,
                                n_threads, never_measured(), stop)
    finally:
        if n_threads == 1:
            threads.close()
    return out, threads, stop


@pytest.mark.parametrize("n_threads", [1, 2])
def test_no_chunk_starts_once_the_clock_says_the_budget_is_spent(n_threads):
    ran = []
    costs = measured_costs(per_candidate=1.0)
    (n, aborted), threads, _ = run_until(50, 10.0, FakeClock(9.5), costs,
                                         lambda lo, hi, w: ran.append((lo, hi)) or 10, n_threads)
    threads.close()
    assert (n, aborted) == (0, 0) and ran == []


def test_the_last_chunks_are_sized_to_the_time_left():
    clock = FakeClock()
    ran = []

    def run(lo, hi, worker):                    # each candidate costs one unit
        ran.append(hi - lo)
        clock.now += hi - lo
        return costs.horizon

    costs = measured_costs(horizon=10 ** 6, per_candidate=1.0)
    (n, aborted), _, _ = run_until(50, 7.5, clock, costs, run)
    assert ran == [4, 2, 1] and (n, aborted) == (7, 0)


def test_a_stall_reserve_keeps_the_end_of_the_budget_free():
    stalls = Stalls(measures=True)
    for _ in range(STALL_COUNT):
        stalls.record(wall=4.0 + LOAD_ALLOWANCE, cpu=0.0)     # a 4 s reserve, in fake seconds
    clock = FakeClock()
    ran = []

    def run(lo, hi, worker):
        ran.append(hi - lo)
        clock.now += hi - lo
        return costs.horizon

    costs = measured_costs(horizon=10 ** 6, per_candidate=1.0)
    (n, _), _, _ = run_until(50, 7.5, clock, costs, run, stalls=stalls)
    assert ran == [2, 1] and n == 3                       # 3.5 units usable


def test_a_stopped_chunk_ends_the_call_and_does_not_count():
    ran = []

    def run(lo, hi, worker):
        ran.append((lo, hi))
        return 10 if lo == 0 else 4                      # the second chunk is stopped

    costs = measured_costs(horizon=10, per_candidate=1e-6)
    (n, aborted), _, _ = run_until(50, 1.0, FakeClock(), costs, run)
    assert len(ran) == 2 and n == ran[0][1] and aborted == ran[1][1] - ran[1][0]


def test_two_threads_leave_a_late_worker_chunk_behind_and_raise_the_stop_flag():
    clock = FakeClock()
    worker_started, release = threading.Event(), threading.Event()
    chunks = {}

    def run(lo, hi, worker):
        chunks[worker] = (lo, hi)
        if worker == 1:
            worker_started.set()
            release.wait(30)
            return 10
        assert worker_started.wait(30)
        clock.now = 100.0                                   # the deadline has passed
        return 10

    costs = measured_costs(horizon=10, per_candidate=1e-3)
    try:
        (n, aborted), threads, stop = run_until(8, 1.0, clock, costs, run, n_threads=2)
        assert not release.is_set()                         # returned with the worker blocked
        assert stop[0] == 1
        lo1, hi1 = chunks[1]
        lo0, hi0 = chunks[0]
        assert n + aborted == (hi0 - lo0) + (hi1 - lo1)
        assert n == (hi0 if lo0 == 0 else 0)                # only a finished prefix counts
    finally:
        release.set()
    threads.close()


def test_two_threads_wait_for_the_worker_before_the_deadline():
    release = threading.Event()

    def run(lo, hi, worker):
        if worker == 1:
            release.wait(30)
        return 10

    timer = threading.Timer(0.05, release.set)
    timer.start()
    costs = measured_costs(horizon=10, per_candidate=1e-3)
    (n, aborted), threads, stop = run_until(2, 1.0, FakeClock(), costs, run, n_threads=2)
    threads.close()
    timer.join()
    assert (n, aborted) == (2, 0) and stop[0] == 0


def test_an_exception_in_the_worker_is_raised_by_the_caller():
    failed = threading.Event()

    def run(lo, hi, worker):
        if worker == 1:
            failed.set()
            raise ValueError("worker failed")
        assert failed.wait(30)                 # the worker has taken a chunk and failed
        return 10

    costs = measured_costs(horizon=10, per_candidate=1e-3)
    threads = ChunkThreads()
    try:
        with pytest.raises(ValueError, match="worker failed"):
            threads.run_until(64, 1.0, FakeClock(), costs, Stalls(measures=False), run, 2,
                              never_measured(), np.zeros(1, np.uint8))
    finally:
        threads.close()


def test_one_calibration_chunk_at_a_time_before_any_measurement():
    lock = threading.Lock()
    running, most = [0], [0]

    def run(lo, hi, worker):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        assert hi - lo == 1
        return 10

    costs = ChunkCosts(horizon=10, prior_per_candidate=1e-9)   # never measured: no chunk timed
    (n, aborted), threads, _ = run_until(4, 1.0, FakeClock(), costs, run, n_threads=2)
    threads.close()
    assert most[0] == 1 and (n, aborted) == (4, 0)


# ------------------------------------------------------------------ refused budgets
class RefusingObjective:
    """An objective whose budget check refuses: it must not be evaluated at all."""

    def __init__(self, reason):
        self.reason = reason
        self.asked = []

    def budget_check(self, seconds, horizon):
        self.asked.append((seconds, horizon))
        return self.reason

    def __call__(self, samples):
        raise AssertionError("evaluated after a refused budget")

    def evaluate_until(self, samples, deadline, clock):
        raise AssertionError("evaluated after a refused budget")


@pytest.mark.parametrize("cls", [RandomShooting, CEM, ICEM, MPPI])
def test_a_refused_budget_returns_the_fallback_before_sampling(cls):
    opt = cls(horizon=3, population=20, iterations=2, seed=0)
    opt.clock = FakeClock()
    state = opt.rng.bit_generator.state
    obj = RefusingObjective("budget_below_one_step")
    init = np.full((3, 2), 0.25)
    plan = opt.optimize(obj, LO, HI, init_mean=init, time_budget=0.5)
    np.testing.assert_array_equal(plan, init)
    assert obj.asked == [(0.5, 3)] and opt.rng.bit_generator.state == state
    assert opt.last_info == {"n_evaluated": 0, "population": 0, "n_finite": 0,
                             "iterations_done": 0, "budget_cut": True, "fallback": "init_mean",
                             "fallback_reason": "budget_below_one_step",
                             "cut_by": "budget_below_one_step", "n_aborted": 0}
    plan = opt.optimize(RefusingObjective("budget_below_one_candidate"), LO, HI, time_budget=0.5)
    np.testing.assert_array_equal(plan, np.zeros((3, 2)))
    assert opt.last_info["fallback"] == "middle"
    # without a budget nothing is asked
    assert opt.optimize(lambda s: -np.abs(s).sum(axis=(1, 2)), LO, HI).shape == (3, 2)


def agent_with_costs(candidate_seconds, horizon=4):
    """A PETS agent (CEM, one unhurried plan made) whose rollout measured one candidate at
    ``candidate_seconds``."""
    planner = CEM(horizon=horizon, population=30, iterations=2, seed=0)
    agent = PETS(linear_arrays([0.9, 1.1]), lambda o, a, n: -n[:, 0] ** 2,
                 (np.array([-1.0]), np.array([3.0])), planner=planner, particles=2, seed=0)
    obs = np.array([0.5])
    agent.plan(obs)
    bound = agent.rollout.objective(agent._arrays(), obs)
    agent.rollout.chunk_costs(bound, horizon).record(1, candidate_seconds)
    return agent, obs


@pytest.mark.parametrize("budget,reason", [(1.0, "budget_below_one_step"),
                                           (50.0, "budget_below_one_candidate")])
def test_agent_budget_below_the_measured_cost_returns_the_shifted_plan_at_once(budget, reason):
    agent, obs = agent_with_costs(100.0)            # one candidate 100 s: one step 25 s
    previous = agent.last_plan.copy()
    calls = agent.rollout.n_calls
    plan = agent.plan(obs, time_budget=budget)
    np.testing.assert_array_equal(plan[:-1], previous[1:])
    assert plan[-1, 0] == 1.0                          # the middle of [-1, 3]
    info = agent.last_plan_info
    assert info["fallback"] == "shifted" and info["fallback_reason"] == reason
    assert info["cut_by"] == reason and info["n_evaluated"] == 0 and info["budget_cut"]
    assert agent.rollout.n_calls == calls              # nothing was rolled out


def test_agent_budget_without_a_previous_plan_returns_the_middle():
    agent, obs = agent_with_costs(100.0)
    agent.reset()
    plan = agent.plan(obs, time_budget=1.0)
    np.testing.assert_array_equal(plan, np.ones((4, 1)))
    assert agent.last_plan_info["fallback"] == "middle"


def test_agent_refuses_for_the_machine_load_when_only_the_reserve_does_not_fit():
    agent, obs = agent_with_costs(1.0)
    agent.rollout._stalls = stalls = Stalls(measures=True)
    for _ in range(STALL_COUNT):
        stalls.record(wall=20.0, cpu=0.0)                  # 20 s stalls: a reserve of ~20 s
    agent.plan(obs, time_budget=10.0)
    info = agent.last_plan_info
    assert info["fallback"] == "shifted" and info["fallback_reason"] == "machine_load"


def test_rollout_deadline_already_passed_starts_nothing():
    ro = ModelRollout(lambda o, a, n: -n[:, 0] ** 2, particles=2, seed=0)
    f = ro.objective(random_arrays(d_obs=3, d_act=1, dtype=np.float64), np.zeros(3))
    acts = np.random.default_rng(0).uniform(-1, 1, (10, 4, 1))
    values, n, aborted = f.evaluate_until(acts, time.perf_counter() - 1.0, time.perf_counter)
    assert (n, aborted) == (0, 0) and np.all(np.isnan(values))
    assert ro._deadline_buffers == {}                      # no chunk ever ran
    ro.close()
