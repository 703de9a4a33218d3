"""AsyncController: plan advancing, warm-start shifts, errors, start/stop, ownership of buffers.

A scripted agent whose ``plan`` blocks until the test releases it makes every interleaving
deterministic; the only waits are for events with generous timeouts.
"""
import threading
import time

import numpy as np
import pytest

from fastmbrl.agents import PETS, RandomAgent
from fastmbrl.control import AsyncController
from fastmbrl.planning import CEM

TIMEOUT = 30.0


class ScriptedAgent:
    """plan[h] = 100 * obs[0] + h; each plan waits for a permit when ``gated``."""

    low = np.array([-1000.0])
    high = np.array([1000.0])
    action_dtype = np.float64

    def __init__(self, horizon=5, gated=True, fail_at=None):
        self.horizon = horizon
        self.gated = gated
        self.fail_at = fail_at
        self.permits = threading.Semaphore(0)
        self.calls = []                 # (obs copy, shift, thread name)
        self.done = threading.Event()
        self.resets = 0

    def plan(self, obs, time_budget=None, shift=1):
        self.calls.append((obs.copy(), shift, threading.current_thread().name))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise ZeroDivisionError("scripted failure")
        if self.gated:
            assert self.permits.acquire(timeout=TIMEOUT)
        out = (100 * obs[0] + np.arange(self.horizon, dtype=np.float64))[:, None]
        return out

    def reset(self):
        self.resets += 1

    def open_gate(self):
        """Let every pending and later plan through (so that close() can join)."""
        self.gated = False
        for _ in range(100):
            self.permits.release()


def wait_until(pred, timeout=TIMEOUT):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


def planner_threads():
    return [t for t in threading.enumerate() if t.name == "fastmbrl-planner"]


def test_actions_come_from_the_freshest_plan_advanced_by_the_steps_since():
    agent = ScriptedAgent()
    agent.permits.release()                         # the first plan may finish
    with AsyncController(agent) as ctrl:
        assert ctrl.step(np.array([1.0]))[0] == 100.0      # waited for the plan of obs 0: age 0
        a1 = ctrl.step(np.array([2.0]))
        wait_until(lambda: len(agent.calls) == 2)           # planning from obs 2, held there
        a2 = ctrl.step(np.array([3.0]))
        a3 = ctrl.step(np.array([4.0]))
        assert (a1[0], a2[0], a3[0]) == (101.0, 102.0, 103.0)   # the old plan, advanced
        agent.permits.release()                         # plan from obs 2 (step 1) completes
        wait_until(lambda: ctrl.stats["replans"] == 2)
        assert ctrl.step(np.array([5.0]))[0] == 200.0 + 3   # step 4 - step 1 = 3 steps on
        # the next plan starts from the latest observation (step 3's, 4.0) or step 4's (5.0)
        wait_until(lambda: len(agent.calls) == 3)
        assert agent.calls[2][0][0] in (4.0, 5.0)
        # warm start advanced by the steps between the two plans' observations
        # (obs 4.0 is step 3's, 5.0 step 4's; the previous plan's was step 1's)
        assert agent.calls[1][1] == 1
        assert agent.calls[2][1] == (2 if agent.calls[2][0][0] == 4.0 else 3)
        agent.permits.release()
        wait_until(lambda: ctrl.stats["replans"] == 3)
        s = ctrl.stats
        assert s["steps"] == 5 and s["missed"] == 3 and s["plan_age_steps_p99"] >= 3
        assert s["replans_per_second"] > 0 and s["plan_ms_p50"] >= 0
        agent.open_gate()
    assert not planner_threads()


def test_beyond_the_horizon_the_last_action_is_held_and_counted_stale():
    agent = ScriptedAgent(horizon=3)
    agent.permits.release()
    with AsyncController(agent) as ctrl:
        out = [ctrl.step(np.array([1.0]))[0] for _ in range(6)]
        assert out == [100.0, 101.0, 102.0, 102.0, 102.0, 102.0]
        assert ctrl.stats["stale"] == 3
        agent.open_gate()


def test_first_step_middle_returns_at_once():
    agent = ScriptedAgent()
    with AsyncController(agent, first_step="middle") as ctrl:
        assert ctrl.step(np.array([1.0]))[0] == 0.0
        agent.permits.release()
        wait_until(lambda: ctrl.stats["replans"] == 1)
        assert ctrl.step(np.array([1.0]))[0] == 101.0
        agent.open_gate()


def test_no_busy_waiting_without_a_new_observation():
    agent = ScriptedAgent(gated=False)
    with AsyncController(agent) as ctrl:
        ctrl.step(np.array([1.0]))
        time.sleep(0.05)
        assert len(agent.calls) == 1            # the thread waits for the next observation
        ctrl.step(np.array([2.0]))
        wait_until(lambda: len(agent.calls) == 2)
        time.sleep(0.05)
        assert len(agent.calls) == 2


def test_error_in_the_planning_thread_is_raised_in_the_caller():
    agent = ScriptedAgent(gated=False, fail_at=2)
    ctrl = AsyncController(agent)
    ctrl.step(np.array([1.0]))
    ctrl.step(np.array([2.0]))                       # triggers the failing plan
    wait_until(lambda: not ctrl.running)
    with pytest.raises(ZeroDivisionError, match="scripted"):
        ctrl.step(np.array([3.0]))
    with pytest.raises(ZeroDivisionError):
        ctrl.step(np.array([3.0]))                   # and on every later call
    ctrl.close()
    assert not planner_threads()


def test_error_in_the_first_plan_reaches_a_waiting_step():
    agent = ScriptedAgent(gated=False, fail_at=1)
    with AsyncController(agent) as ctrl:
        with pytest.raises(ZeroDivisionError):
            ctrl.step(np.array([1.0]))


def test_start_stop_without_leaked_threads_and_idempotent_close():
    before = set(threading.enumerate())
    for _ in range(5):
        agent = ScriptedAgent(gated=False)
        with AsyncController(agent) as ctrl:
            ctrl.step(np.array([0.5]))
            assert ctrl.running
        assert not ctrl.running
        ctrl.close()                                 # idempotent
        with pytest.raises(RuntimeError, match="close"):
            ctrl.step(np.array([0.5]))
    # a controller closed while its planner is blocked inside plan() joins after that plan
    agent = ScriptedAgent()
    ctrl = AsyncController(agent, first_step="middle")
    ctrl.step(np.array([0.5]))
    wait_until(lambda: len(agent.calls) == 1)
    agent.permits.release()
    ctrl.close()
    assert set(threading.enumerate()) == before


def test_switch_interval_restored():
    import sys
    old = sys.getswitchinterval()
    with AsyncController(ScriptedAgent(gated=False), gil_switch_interval=1e-4):
        assert sys.getswitchinterval() == pytest.approx(1e-4)
    assert sys.getswitchinterval() == old


def test_the_controller_owns_its_copies():
    """The caller may reuse its observation array; plans handed out are copies."""
    agent = ScriptedAgent()
    agent.permits.release()
    obs = np.array([1.0])
    with AsyncController(agent) as ctrl:
        ctrl.step(obs)
        obs[0] = 7.0                                  # the caller reuses its buffer
        ctrl.step(obs)
        obs[0] = 9.0
        agent.permits.release()
        wait_until(lambda: ctrl.stats["replans"] == 2)
        assert [c[0][0] for c in agent.calls] == [1.0, 7.0]
        assert all(c[2] == "fastmbrl-planner" for c in agent.calls)   # planner thread only
        a = ctrl.step(obs)
        a[0] = -5.0
        assert ctrl.step(obs)[0] != -5.0
        agent.open_gate()


def test_reset_resets_the_agent_in_the_planning_thread():
    agent = ScriptedAgent(gated=False)
    with AsyncController(agent) as ctrl:
        ctrl.step(np.array([1.0]))
        ctrl.reset()
        assert ctrl.step(np.array([2.0]))[0] == 200.0          # waits again for a fresh plan
        assert agent.resets == 1


def test_bad_arguments():
    with pytest.raises(TypeError, match="agent"):
        AsyncController(RandomAgent((np.array([-1.0]), np.array([1.0]))))
    for kw, name in ((dict(control_period=0.0), "control_period"),
                     (dict(time_budget="0.1"), "time_budget"),
                     (dict(first_step="wait"), "first_step"),
                     (dict(gil_switch_interval=-1.0), "gil_switch_interval")):
        with pytest.raises((TypeError, ValueError), match=name):
            AsyncController(ScriptedAgent(), **kw)
    assert not planner_threads()


def test_with_a_real_pets_agent():
    import pathlib
    import sys
    helpers = str(pathlib.Path(__file__).resolve().parent / "planning")
    if helpers not in sys.path:
        sys.path.insert(0, helpers)
    from planning_helpers import linear_arrays

    def reward(o, a, n):
        return -n[:, 0] ** 2

    agent = PETS(linear_arrays([0.9, 1.1]), reward, (np.array([-1.0]), np.array([1.0])),
                 planner=CEM(horizon=5, population=40, iterations=2, seed=0), particles=2,
                 seed=0)
    with AsyncController(agent, control_period=0.01, time_budget=0.5) as ctrl:
        x = np.array([0.6])
        for _ in range(20):
            a = ctrl.step(x)
            assert a.shape == (1,) and -1 <= a[0] <= 1 and np.isfinite(a[0])
            x = np.clip(x + a, -5, 5)
            time.sleep(0.002)
        assert ctrl.stats["replans"] >= 1
    assert not planner_threads()
