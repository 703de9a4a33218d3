"""One full MBRL iteration (Algorithm 1, lines 3-5): refit the model, then act for one episode.

Run: ``pytest benchmarks/bench_loop.py --benchmark-only``. Each environment's default config is
used, on a buffer of random transitions (10 episodes' worth). The time is split into fitting,
acting and environment stepping in ``extra_info``, beside the episode's return and the ratio of
planning time to environment time (what the model costs over the simulator). JIT compilation is
excluded with warm-up rounds.

FLOPs (``_floor.py``): the fit's products (``_floor.fit_flops`` of its history: early stopping
makes them differ from round to round, so a call's count is the mean over the timed rounds) and
the planner's forward passes of every act(); the floor time adds the fit's at the model's thread
count and the planning's at the agent's. Environment steps and Python between the calls are not
counted.
"""
import os
import sys
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastmbrl as fm
from fastmbrl.buffer import ReplayBuffer
from fastmbrl.config import RunConfig, from_dict
from fastmbrl.algorithms._common import collect_episode
from fastmbrl.algorithms.pets import make_agent, make_model

sys.path.insert(0, os.path.dirname(__file__))

import _floor  # noqa: E402

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


def act_flops(agent, model):
    """FLOPs of one ``agent.act()`` (the last one; a CEM-family planner scores the same number of
    candidates in each): the forward passes of every scored candidate's particles over the
    horizon (one member per row for ts1/tsinf; every elite for "expectation", and once more per
    elite with an optimism bonus)."""
    members = len(model.elites)
    if agent.propagation == "expectation":
        passes = members
    else:
        passes = 1 + (members if agent.rollout.bonus_weight > 0 else 0)
    rows = agent.planner.last_info["n_evaluated"] * agent.particles
    return passes * agent.planner.horizon * _floor.forward_flops(model.net.layer_dims, rows)


@pytest.mark.parametrize("env_id", ENVS)
def test_mbrl_iteration(benchmark, env_id):
    made, cfg, buf = _setup(env_id)
    model = make_model(made.obs_dim, made.act_dim, cfg, made.angle_dims, seed=0)
    out = {}
    rounds = []             # (fit FLOPs, act FLOPs, act threads) of every call

    def iteration():
        m = cfg.model
        t0 = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):
            hist = model.fit(buf.obs, buf.act, buf.next_obs, max_epochs=m.max_epochs,
                             batch_size=m.batch_size, holdout_frac=m.holdout_frac,
                             patience=m.patience, progress=False)
        fit_s = time.perf_counter() - t0
        agent = make_agent(model, made.env.action_space, made.reward_fn,
                           made.termination_fn, cfg, seed=1)
        agent.reset()
        episode_buf = ReplayBuffer(1000, made.obs_dim, made.act_dim)
        record, _ = collect_episode(made.env, agent.act, episode_buf, 123, None)
        agent.close()
        rounds.append((_floor.history_fit_flops(model, hist, m.batch_size),
                       record.length * act_flops(agent, model), agent.n_threads))
        out.update(fit_s=fit_s, act_s=record.act_time, env_s=record.env_time,
                   ret=record.ret, length=record.length)
        return record

    record = benchmark.pedantic(iteration, rounds=2, iterations=1, warmup_rounds=1)
    assert record.length > 0 and np.isfinite(record.ret)
    timed = rounds[-len(benchmark.stats.stats.data):] if not benchmark.disabled else rounds
    _floor.record_parts(benchmark, [
        (np.mean([fit for fit, _, _ in timed]), model.n_threads),
        (np.mean([act for _, act, _ in timed]), timed[-1][2])])
    benchmark.extra_info.update(
        env=env_id, transitions=len(buf), episode_return=out["ret"], episode_length=out["length"],
        fit_seconds=out["fit_s"], act_seconds=out["act_s"], env_seconds=out["env_s"],
        ms_per_action=1000 * out["act_s"] / out["length"],
        act_over_env_ratio=out["act_s"] / max(out["env_s"], 1e-9))
