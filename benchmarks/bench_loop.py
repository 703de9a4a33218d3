"""One full MBRL iteration (Algorithm 1, lines 3-5): refit the model, then act for one episode.

Run: ``pytest benchmarks/bench_loop.py --benchmark-only``. Each environment's default config is
used, on a buffer of random transitions (10 episodes' worth). The time is split into fitting,
acting and environment stepping in ``extra_info``, beside the episode's return and the ratio of
planning time to environment time (what the model costs over the simulator). JIT compilation is
excluded with warm-up rounds.
"""
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastmbrl as fm
from fastmbrl.buffer import ReplayBuffer
from fastmbrl.config import RunConfig, from_dict
from fastmbrl.algorithms._common import collect_episode
from fastmbrl.algorithms.pets import make_agent, make_model

ENVS = ["Pendulum-v1", "CartPoleContinuous-v0"]


def _setup(env_id, n_random_episodes=10, seed=0):
    made = fm.envs.make(env_id)
    cfg = from_dict(made.spec.defaults, base=RunConfig(env=env_id))
    buf = ReplayBuffer(100_000, made.obs_dim, made.act_dim)
    rng = np.random.default_rng(seed)
    low, high = made.env.action_space.low, made.env.action_space.high
    for k in range(n_random_episodes):
        collect_episode(made.env, lambda o: rng.uniform(low, high).astype(np.float32), buf,
                         seed + k, None)
    return made, cfg, buf


@pytest.mark.parametrize("env_id", ENVS)
def test_mbrl_iteration(benchmark, env_id):
    made, cfg, buf = _setup(env_id)
    model = make_model(made.obs_dim, made.act_dim, cfg, made.angle_dims, seed=0)
    out = {}

    def iteration():
        m = cfg.model
        t0 = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):
            model.fit(buf.obs, buf.act, buf.next_obs, max_epochs=m.max_epochs,
                      batch_size=m.batch_size, holdout_frac=m.holdout_frac, patience=m.patience,
                      progress=False)
        fit_s = time.perf_counter() - t0
        agent = make_agent(model, made.env.action_space, made.reward_fn,
                           made.termination_fn, cfg, seed=1)
        agent.reset()
        episode_buf = ReplayBuffer(1000, made.obs_dim, made.act_dim)
        record, _ = collect_episode(made.env, agent.act, episode_buf, 123, None)
        agent.close()
        out.update(fit_s=fit_s, act_s=record.act_time, env_s=record.env_time,
                   ret=record.ret, length=record.length)
        return record

    record = benchmark.pedantic(iteration, rounds=2, iterations=1, warmup_rounds=1)
    assert record.length > 0 and np.isfinite(record.ret)
    benchmark.extra_info.update(
        env=env_id, transitions=len(buf), episode_return=out["ret"], episode_length=out["length"],
        fit_seconds=out["fit_s"], act_seconds=out["act_s"], env_seconds=out["env_s"],
        ms_per_action=1000 * out["act_s"] / out["length"],
        act_over_env_ratio=out["act_s"] / max(out["env_s"], 1e-9))
