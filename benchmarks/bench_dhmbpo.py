"""One DHMBPO update (``fastmbrl.agents.double_horizon.double_horizon_update``) at Hopper-v5's sizes.

Sizes of the suite's defaults: a 5-step training rollout of 256 states through an 8-member
3 x 256 model (untrained: the cost does not depend on the weights), a 5-member 3 x 256 critic
ensemble with layer normalization and dropout, a 3 x 256 actor, float32. Run on 1 and 2 threads
(``agent.n_threads``): on 2 the critic's kernels split its members over the Numba team; the
training rollout and its backward pass (a chain of small per-step kernels) stay on one core.
``extra_info`` holds the update's matrix-product flops (``run_dhmbpo_cost.update_flops``: the
setup and the count of the cost split), the fraction of the sgemm rate of the same session
(``_floor.py``), and, for 2 threads, the ratio to the 1-thread median of the same run.

Run:  python -m pytest benchmarks/bench_dhmbpo.py --benchmark-columns=median,ops -q
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import _floor  # noqa: E402
from run_dhmbpo_cost import setup, update_flops  # noqa: E402

ENV = "Hopper-v5"
MEDIANS = {}


def _setup(n_threads):
    pytest.importorskip("mujoco")
    from fastmbrl.models import ModelEnv

    spec, cfg, _, agent, critic, model, obs, act, nxt = setup(ENV, n_threads, rows=1000)
    # one short fit sets the normalisers, so the rollout runs on sensible inputs
    model.fit(obs, act, nxt, None, max_epochs=1, max_steps=5, progress=False)
    menv = ModelEnv(model, reward_fn=spec.reward_fn, termination_fn=spec.termination_fn)
    states = obs[np.random.default_rng(0).integers(0, len(obs), agent.batch_size)]
    return agent, critic, menv, states, cfg.dhmbpo.horizon, model


@pytest.mark.parametrize("n_threads", [1, 2])
def test_dhmbpo_update(benchmark, n_threads):
    from fastmbrl.agents.double_horizon import double_horizon_update

    benchmark.group = "dhmbpo-update"
    agent, critic, menv, states, h, model = _setup(n_threads)
    metrics = {}
    with agent.kernel_context():
        for _ in range(5):
            double_horizon_update(agent, critic, menv, states, h)

        def once():
            metrics.update(double_horizon_update(agent, critic, menv, states, h))

        benchmark.pedantic(once, rounds=40, iterations=1, warmup_rounds=2)
    assert all(np.isfinite(v) for v in metrics.values())
    _floor.record(benchmark, sum(update_flops(agent, critic, model, h).values()), n_threads)
    if getattr(benchmark, "stats", None) is not None:
        median = benchmark.stats.stats.median
        MEDIANS[n_threads] = median
        benchmark.extra_info["updates_per_s"] = 1.0 / median
        if n_threads == 2 and 1 in MEDIANS:
            benchmark.extra_info["speedup_vs_1_thread"] = MEDIANS[1] / median
