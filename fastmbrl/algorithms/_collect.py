"""Collecting transitions and evaluating policies: whole episodes (:func:`collect_episode`, the
random initial data, :func:`evaluate`) and one step at a time (:class:`StepCollector`, the
step-based loops' environment side, with its exact resume).
"""
import logging
import time

import numpy as np

from fastmbrl.algorithms._records import EpisodeRecord
from fastmbrl.algorithms._seeding import (STREAM_ENV, STREAM_EVAL_ENV, STREAM_INITIAL_ENV,
                                          STREAM_RANDOM_ACTIONS, derive_seed)

__all__ = ["env_reward", "collect_episode", "collect_initial_data", "evaluate", "StepCollector"]

log = logging.getLogger("fastmbrl.algorithms")


# ---------------------------------------------------------------------------------------------
# whole episodes
# ---------------------------------------------------------------------------------------------
def env_reward(env, reward):
    """The reward an environment's ``step`` returned, as a float.

    Raises
    ------
    TypeError
        Naming the environment's reward and the type it returned, unless it is a real scalar
        (a Python or NumPy number or a 0-d real array; not a bool, a string, None or a sequence).
    """
    if isinstance(reward, (int, float, np.integer, np.floating)) and not isinstance(
            reward, (bool, np.bool_)):
        return float(reward)
    if isinstance(reward, np.ndarray) and reward.ndim == 0 and reward.dtype.kind in "iuf":
        return float(reward)
    name = getattr(getattr(env, "spec", None), "id", None) or type(
        getattr(env, "unwrapped", env)).__name__
    shape = f" of shape {reward.shape}" if isinstance(reward, np.ndarray) else ""
    raise TypeError(f"env: the reward returned by {name}.step must be a real scalar, got "
                    f"{type(reward).__name__}{shape} ({reward!r:.60})")


def collect_episode(env, policy, buffer, env_seed, max_steps, on_step=None):
    """Run one episode of ``policy`` in ``env``, adding every transition to ``buffer``.

    Parameters
    ----------
    env : gymnasium.Env
    policy : callable
        ``policy(obs (D_obs,)) -> action (D_act,)``.
    buffer : ReplayBuffer or None
        Receives each transition (None: nothing is stored, e.g. evaluation).
    env_seed : int or None
        Passed to ``env.reset``.
    max_steps : int or None
        Cut the episode (as a truncation) after this many steps.
    on_step : callable, optional
        ``on_step(step) -> stop`` after each step; a true value stops the run after this episode.

    Returns
    -------
    record : EpisodeRecord
        Return, length, termination and the act/env time split (``episode`` left 0).
    stop : bool
    """
    obs, _ = env.reset(seed=env_seed)
    ret, length, terminated, act_time, env_time, stop = 0.0, 0, False, 0.0, 0.0, False
    while True:
        t0 = time.perf_counter()
        action = policy(obs)
        t1 = time.perf_counter()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        t2 = time.perf_counter()
        reward = env_reward(env, reward)
        act_time += t1 - t0
        env_time += t2 - t1
        length += 1
        truncated = bool(truncated) or (max_steps is not None and length >= max_steps)
        if buffer is not None:
            buffer.add(obs, action, reward, next_obs, bool(terminated), truncated)
        ret += reward
        obs = next_obs
        if on_step is not None and on_step(length):
            stop = True
        if terminated or truncated:
            break
    return EpisodeRecord(episode=0, ret=ret, length=length, terminated=bool(terminated),
                         act_time=act_time, env_time=env_time), stop


def collect_initial_data(ctx, buffer):
    """Algorithm 1, line 1: fill ``buffer`` with ``algorithm.initial_steps`` transitions of
    uniformly random actions; returns the EpisodeRecords (episodes 0, -1, -2, ...)."""
    cfg, env = ctx.config, ctx.env.env
    rng = np.random.default_rng(derive_seed(cfg.seed, STREAM_RANDOM_ACTIONS, 0))
    low = env.action_space.low.astype(np.float64)
    high = env.action_space.high.astype(np.float64)
    dtype = env.action_space.dtype

    def random_policy(obs):
        return rng.uniform(low, high).astype(dtype)

    records, k, steps = [], 0, 0
    target = cfg.algorithm.initial_steps
    while steps < target:
        remaining = target - steps
        cap = remaining if ctx.max_episode_steps is None else min(ctx.max_episode_steps,
                                                                   remaining)
        rec, _ = collect_episode(env, random_policy, buffer,
                                 derive_seed(cfg.seed, STREAM_INITIAL_ENV, k), cap)
        steps += rec.length
        rec.episode = -k
        rec.buffer_size = len(buffer)
        rec.steps = steps
        rec.wall_time = time.perf_counter() - ctx.t_start
        records.append(rec)
        k += 1
    return records


def evaluate(policy, env, n_episodes, seed, max_steps=None):
    """Mean return of ``policy`` over ``n_episodes`` episodes on ``env`` (nothing is stored).

    Give it its own environment instance (``RunContext.make_env()``) so the training
    environment's state is untouched.

    Parameters
    ----------
    policy : callable
        ``policy(obs) -> action`` (typically a deterministic actor).
    env : gymnasium.Env
    n_episodes : int
    seed : int
        Episode k is reset with ``derive_seed(seed, STREAM_EVAL_ENV, k)``.
    max_steps : int, optional

    Returns
    -------
    mean_return : float
    records : list of EpisodeRecord
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise ValueError(f"n_episodes: expected a positive integer, got {n_episodes!r}")
    records = [collect_episode(env, policy, None, derive_seed(seed, STREAM_EVAL_ENV, k),
                               max_steps)[0] for k in range(n_episodes)]
    return float(np.mean([r.ret for r in records])), records


# ---------------------------------------------------------------------------------------------
# one step at a time (the step-based loops)
# ---------------------------------------------------------------------------------------------
class StepCollector:
    """One environment stepped one transition at a time, with episode bookkeeping.

    Episode ``k`` of the run is reset with ``derive_seed(seed, STREAM_ENV, k)``; an episode ends
    on ``terminated``, on the environment's ``truncated`` or after ``max_episode_steps`` steps (a
    truncation). Every transition goes into ``buffer`` with its own terminated / truncated flags:
    the learner cuts bootstrapping on ``terminated`` only.

    Exact resume (:meth:`state` / :meth:`restore`): the environment's internal state cannot be
    saved in general, so the current episode is replayed: reset with its seed, then its actions
    (the newest rows of the buffer) are stepped again. For a deterministic environment (all the
    specs) this rebuilds the state bit for bit; the replayed observations are compared with the
    stored ones and a mismatch is logged.

    Attributes
    ----------
    steps : int
        Transitions collected by the run so far.
    episode : int
        Index of the current (unfinished) episode.
    obs : array (D_obs,)
        The current observation.
    ep_len, ep_return : int, float
        Length and return of the current episode so far.
    episode_returns : list of float
        Returns of the finished training episodes.
    times : dict
        Seconds spent in ``env`` (env.reset / env.step) and ``act`` (the policy), accumulated.
    """

    def __init__(self, env, buffer, seed, max_episode_steps):
        self.env, self.buffer, self.seed = env, buffer, int(seed)
        self.max_episode_steps = max_episode_steps
        self.steps, self.episode, self.ep_len, self.ep_return = 0, 0, 0, 0.0
        self.episode_returns = []
        self.times = {"env": 0.0, "act": 0.0}
        self.obs = None

    def _reset(self):
        t0 = time.perf_counter()
        self.obs, _ = self.env.reset(seed=derive_seed(self.seed, STREAM_ENV, self.episode))
        self.times["env"] += time.perf_counter() - t0
        self.ep_len, self.ep_return = 0, 0.0

    def step(self, policy):
        """Act with ``policy(obs) -> action``, step the environment, store the transition.

        Returns
        -------
        terminated, truncated : bool
            Of this transition (the next call starts a new episode after either).
        """
        if self.obs is None:
            self._reset()
        t0 = time.perf_counter()
        action = policy(self.obs)
        t1 = time.perf_counter()
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        t2 = time.perf_counter()
        reward = env_reward(self.env, reward)
        self.times["act"] += t1 - t0
        self.times["env"] += t2 - t1
        self.ep_len += 1
        self.steps += 1
        terminated = bool(terminated)
        truncated = bool(truncated) or (self.max_episode_steps is not None
                                        and self.ep_len >= self.max_episode_steps)
        self.buffer.add(self.obs, action, reward, next_obs, terminated, truncated)
        self.ep_return += reward
        self.obs = next_obs
        if terminated or truncated:
            self.episode_returns.append(self.ep_return)
            self.episode += 1
            self.obs = None
        return terminated, truncated

    def state(self):
        """JSON-serialisable progress (what :meth:`restore` needs besides the buffer)."""
        return {"steps": self.steps, "episode": self.episode, "ep_len": self.ep_len,
                "ep_return": self.ep_return, "episode_returns": list(self.episode_returns),
                "started": self.obs is not None}

    def restore(self, state):
        """Continue from :meth:`state` output; the buffer must be the checkpointed one."""
        self.steps, self.episode = int(state["steps"]), int(state["episode"])
        self.episode_returns = [float(v) for v in state["episode_returns"]]
        ep_len = int(state["ep_len"])
        self.obs = None
        if not state["started"]:
            return
        if ep_len > len(self.buffer):
            raise ValueError(f"resume: the current episode has {ep_len} steps but the buffer holds "
                             f"only {len(self.buffer)} transitions")
        self._reset()
        if ep_len:
            acts = self.buffer.act[-ep_len:]
            stored = self.buffer.next_obs[-ep_len:]
            dtype = self.env.action_space.dtype
            worst = 0.0
            for i in range(ep_len):
                self.obs, reward, _, _, _ = self.env.step(acts[i].astype(dtype))
                self.ep_return += env_reward(self.env, reward)
                worst = max(worst, float(np.max(np.abs(np.asarray(self.obs, stored.dtype)
                                                       - stored[i]), initial=0.0)))
            self.ep_len = ep_len
            if worst > 0.0:
                log.warning("resume: replaying the unfinished episode gave observations up to %.3g "
                            "away from the stored ones (a non-deterministic environment); the "
                            "run continues from the replayed state", worst)
        self.ep_return = float(state["ep_return"])
