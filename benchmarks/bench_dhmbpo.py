"""One DHMBPO update (``fastmbrl.agents.double_horizon.double_horizon_update``) at Hopper-v5's sizes.

Sizes of the suite's defaults: a 5-step training rollout of 256 states through an 8-member
3 x 256 model (untrained: the cost does not depend on the weights), a 5-member 3 x 256 critic
ensemble with layer normalization and dropout, a 3 x 256 actor, float32. Run on 1 and 2 threads
(``agent.n_threads``): on 2 the critic's kernels split its members over the Numba team; the
training rollout and its backward pass (a chain of small per-step kernels) stay on one core.
``extra_info``
holds the update's multiply-adds (x 2 flops: actor and model forward per step, the critic's
target, loss and weight gradients, the ensemble's input gradient, the model's and the actor's
backward passes), the fraction of the sgemm rate of the same session (``_floor.py``), and, for 2
threads, the ratio to the 1-thread median of the same run.

Run:  python -m pytest benchmarks/bench_dhmbpo.py --benchmark-columns=median,ops -q
"""
import os
import sys

import numpy as np
import pytest

import fastmbrl as fm

sys.path.insert(0, os.path.dirname(__file__))

import _floor  # noqa: E402

ENV = "Hopper-v5"
MEDIANS = {}


def _setup(n_threads):
    pytest.importorskip("mujoco")
    from fastmbrl.algorithms.dhmbpo import _model_config, make_agent, make_critic
    from fastmbrl.algorithms.mbpo import env_model
    from fastmbrl.config import RunConfig, from_dict
    from fastmbrl.envs import get_spec
    from fastmbrl.models import ModelEnv

    spec = get_spec(ENV)
    cfg = _model_config(from_dict({**spec.defaults, "sac": {**spec.defaults.get("sac", {}),
                                                            "n_threads": n_threads}},
                                  base=RunConfig(env=ENV)))
    made = fm.envs.make(ENV)
    agent, critic = make_agent(made, cfg, 0), make_critic(made, cfg, 1)
    model = env_model(made, cfg, 2)
    rng = np.random.default_rng(0)
    obs, act = [], rng.uniform(-1, 1, (1000, made.act_dim)).astype(np.float32)
    o, _ = made.env.reset(seed=0)
    for a in act:
        obs.append(o)
        o, _, terminated, truncated, _ = made.env.step(a)
        if terminated or truncated:
            o, _ = made.env.reset()
    obs = np.array(obs, np.float32)
    # one short fit sets the normalisers, so the rollout runs on sensible inputs
    model.fit(obs[:-1], act[:-1], obs[1:], None, max_epochs=1, max_steps=5, progress=False)
    menv = ModelEnv(model, reward_fn=spec.reward_fn, termination_fn=spec.termination_fn)
    states = obs[rng.integers(0, len(obs), agent.batch_size)]
    return agent, critic, menv, states, cfg.dhmbpo.horizon, model


def update_flops(agent, critic, model, h):
    B, K = agent.batch_size, critic.members
    fc = B * _floor.mlp_macs(critic.dims)
    fa = B * _floor.mlp_macs(agent.dims_actor)
    fm_ = B * _floor.mlp_macs([model.in_dim] + list(model.hidden) + [2 * model.out_dim])
    rollout = h * (fa + fm_) + fa
    critic_step = 2 * fc + 3 * K * fc           # the target's pair, loss forward and backward
    actor_step = 2 * K * fc + h * 2 * fm_ + (h + 1) * 3 * fa
    return 2 * (rollout + critic_step + actor_step)


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
    _floor.record(benchmark, update_flops(agent, critic, model, h), n_threads)
    if getattr(benchmark, "stats", None) is not None:
        median = benchmark.stats.stats.median
        MEDIANS[n_threads] = median
        benchmark.extra_info["updates_per_s"] = 1.0 / median
        if n_threads == 2 and 1 in MEDIANS:
            benchmark.extra_info["speedup_vs_1_thread"] = MEDIANS[1] / median
