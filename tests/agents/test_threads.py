"""One agent shared by threads: calls are serialized, so the results equal sequential calls."""
import threading

import numpy as np

from fastmbrl.agents import PETS, RandomAgent
from fastmbrl.planning import CEM
from planning_helpers import random_arrays


class OrderedModel:
    """A model whose ``arrays()`` (once per plan, inside the agent's lock) logs the caller."""

    def __init__(self, arrays):
        self._arrays = arrays
        self.order = []

    def arrays(self):
        self.order.append(threading.get_ident())
        return self._arrays


def reward(o, a, n):
    return -(n ** 2).sum(axis=1) - 0.1 * (a ** 2).sum(axis=1)


def make_agent(model, n_threads=1):
    return PETS(model, reward, (np.array([-1.0]), np.array([1.0])),
                planner=CEM(horizon=6, population=80, iterations=3, seed=11), particles=6,
                n_threads=n_threads, seed=5)


def test_two_threads_hammering_one_agent_match_sequential_calls():
    arrays = random_arrays(d_obs=3, d_act=1, dtype=np.float64, seed=4)
    for n_threads in (1, 2):
        shared = OrderedModel(arrays)
        agent = make_agent(shared, n_threads)
        shared.order.clear()                     # the constructor's call
        obs_rng = np.random.default_rng(0)
        inputs = {k: obs_rng.standard_normal((25, 3)) for k in range(2)}
        results = {}
        barrier = threading.Barrier(2)

        def hammer(k):
            barrier.wait()
            results[threading.get_ident()] = (k, [agent.act(o) for o in inputs[k]])

        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # replay the calls in the order the agent served them, on a fresh agent
        replay = OrderedModel(arrays)
        ref = make_agent(replay, n_threads)
        position = {ident: 0 for ident in results}
        for ident in shared.order:
            k, actions = results[ident]
            j = position[ident]
            position[ident] += 1
            np.testing.assert_array_equal(ref.act(inputs[k][j]), actions[j])
        assert position == {ident: 25 for ident in results}
        agent.close()
        ref.close()


def test_random_agent_shared_by_threads_draws_each_number_once():
    agent = RandomAgent((np.array([-1.0]), np.array([1.0])), seed=0)
    out = []

    def draw():
        out.extend(agent.act()[0] for _ in range(500))

    threads = [threading.Thread(target=draw) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ref = RandomAgent((np.array([-1.0]), np.array([1.0])), seed=0)
    expected = [ref.act()[0] for _ in range(1000)]
    assert sorted(out) == sorted(expected)
