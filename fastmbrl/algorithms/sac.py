"""SAC: soft actor-critic trained from environment steps (the model-free baseline of section 5).

Reads like CleanRL's ``sac_continuous_action.py``:

    1: for global step t = 1 .. total_steps:
    2:     a = uniform random action if t <= learning_starts else a ~ pi(.|s)
    3:     step the environment, store (s, a, r, s', terminated, truncated) in the buffer;
           reset on terminated or truncated
    4:     if t > learning_starts: updates_per_step SAC updates on minibatches of the buffer
           (critics, actor, temperature, Polyak; bootstrapping cut on terminated only)
    5:     every eval_every steps (and at the end): evaluate the deterministic policy on its own
           environment instance, write one results row, checkpoint

The step collection, evaluation, records, results files and checkpoints are
``fastmbrl.algorithms._step_loop.StepLoop``; the agent is ``fastmbrl.agents.SAC`` (its
``update_from`` runs the n updates of step 4, minibatch sampling included, in one compiled call).
Budget: ``steps`` (``algorithm.steps``, default ``sac.total_steps``).

Reproducibility: the environment's episodes are reset with seeds derived from (seed, episode), the
random actions come from a generator derived from the seed, and the agent (networks, Adam
moments, temperature, its counter-based generator) is seeded from the seed; checkpoints hold all
of it, so a resumed run gives the same results rows as an uninterrupted one (the unfinished
episode is replayed, see ``StepCollector``).
"""
import logging
import time

import numpy as np

from fastmbrl._threads import resolve_threads
from fastmbrl.algorithms._seeding import STREAM_AGENT, derive_seed
from fastmbrl.algorithms._step_loop import StepLoop, step_budget

__all__ = ["run", "check", "make_agent", "BUDGET"]

BUDGET = "steps"
SECTION = "sac"   # the RunConfig section holding total_steps
# the settings this algorithm reads (see fastmbrl.algorithms)
USES = ("sac.", "algorithm.steps", "algorithm.max_episode_steps", "algorithm.progress")

log = logging.getLogger("fastmbrl.algorithms.sac")


def make_agent(env, config, seed, hidden=None):
    """The ``fastmbrl.agents.SAC`` a RunConfig's ``sac`` section describes (``hidden`` overrides
    ``sac.hidden`` when given)."""
    from fastmbrl.agents import SAC

    s = config.sac
    return SAC(env.obs_dim, env.act_dim, env.env.action_space, hidden=hidden or s.hidden,
               gamma=s.gamma,
               tau=s.tau, lr=s.lr, batch_size=s.batch_size, init_temperature=s.init_temperature,
               dtype=np.dtype(s.dtype).type, seed=seed, n_threads=update_threads(s.n_threads))


def update_threads(n_threads):
    """The update-kernel threads a ``sac.n_threads`` setting means ('auto': 2 with 2 or more
    cores, else 1): ``fastmbrl._threads.resolve_threads``, as ``fastmbrl.agents.SAC`` resolves
    it."""
    return resolve_threads(n_threads)


def make_buffer(env, config):
    """The environment replay buffer (``sac.buffer_capacity`` rows, a ring)."""
    from fastmbrl.buffer import ReplayBuffer

    return ReplayBuffer(config.sac.buffer_capacity, env.obs_dim, env.act_dim,
                        dtype=np.dtype(config.sac.dtype).type, overflow="wrap")


def check(ctx):
    """Refuse what the run would fail on before anything is written: build the agent once."""
    from fastmbrl.config import ConfigError

    try:
        make_agent(ctx.env, ctx.config, seed=0)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sac: the settings cannot build the agent ({exc})") from None
    total = step_budget(ctx.config, ctx.config.sac)
    if total < 1:
        raise ValueError(f"steps: expected at least 1 environment step for sac, got {total}")


def run(ctx):
    """Run SAC from ``ctx`` (a ``fastmbrl.algorithms._common.RunContext``); returns a RunResult."""
    cfg, env = ctx.config, ctx.env
    s = cfg.sac
    agent = make_agent(env, cfg, derive_seed(cfg.seed, STREAM_AGENT, 0))
    loop = StepLoop(ctx, make_buffer(env, cfg), agent, step_budget(cfg, s), s.eval_every,
                    s.eval_episodes, s.learning_starts)
    loop.restore()

    def policy(obs):
        return agent.act(obs)

    def eval_policy(obs):
        return agent.act(obs, deterministic=True)

    def train(lp):
        # ---- SAC updates once the random steps are collected ------------------------------------
        if lp.steps > s.learning_starts and s.updates_per_step > 0:
            t0 = time.perf_counter()
            agent.update_from(lp.buffer, s.updates_per_step)
            lp.times["update"] += time.perf_counter() - t0
            lp.counters["updates"] += s.updates_per_step

    stopped = loop.run(policy, eval_policy, train)
    return loop.result(cfg, stopped)
