"""MBPO: model-based policy optimisation (Janner et al. 2019, Algorithm 2; course notes, 5.2).

    1: collect mbpo.random_steps (default sac.learning_starts) random steps into the environment
       buffer D_env
    2: for each environment step t:
    3:     if t is a refit step (every model_train_every steps from the end of the random data):
    4:         fit the ensemble to D_env (warm start, early stopping, elites; at most
               model_fit_seconds)
    5:         draw rollouts_per_step * model_train_every start states uniformly from D_env and
               roll them k(t) steps through the model with the current policy (stochastic
               actions, a random elite per row per step; rows stop when the termination function
               fires); the transitions replace the oldest refit's in the model buffer D_model
               (which keeps the last model_retain refits)
    6:     act in the environment with the policy, add the transition to D_env
    7:     mbpo.updates_per_step SAC updates on minibatches of real_ratio rows from D_env and the
           rest from D_model
    8:     every sac.eval_every steps: evaluate the deterministic policy, one results row,
           checkpoint

(Steps 6 and 3-5 are in the loop's order: a step is collected, then trained on.) k(t) follows the
linear schedule ``mbpo.rollout_schedule = (start_step, end_step, from_length, to_length)``.

The whole rollout of step 5 (policy forward pass and sample, model step, reward, termination) is
one compiled call per chunk of rows, ``fastmbrl.models.ModelEnv.rollout``; the mixed minibatches
of step 7 are drawn inside SAC's compiled update loop (``SAC.update_from(..., model_buffer,
real_ratio)``). Collection, evaluation, records and checkpoints are
``fastmbrl.algorithms._step_loop.StepLoop``.

Resume: the environment buffer, the model (weights, optimizer, normalisers, generator), the agent
and the loop's counters are checkpointed and come back exactly. The model buffer (up to millions of
rows) is not stored; what made it is: for each retained refit, the model and the policy as they were
then (a few MB), the rollout length, the number of environment rows the starts were drawn from and
the index of its random stream. On resume each retained refit's rollouts are made again from these,
so a resumed run is bit-identical to an uninterrupted one.
"""
import collections
import copy
import logging
import time

from typing import NamedTuple

import numpy as np

from fastmbrl._threads import limit_blas
from fastmbrl.algorithms import sac as _sac
from fastmbrl.algorithms._seeding import STREAM_AGENT, STREAM_MODEL, STREAM_ROLLOUT, derive_seed
from fastmbrl.algorithms._step_loop import StepLoop, step_budget
from fastmbrl.models import ModelArrays, PolicyArrays

__all__ = ["run", "check", "rollout_length", "ModelBuffer", "RefitSource", "BUDGET"]

BUDGET = "steps"
SECTION = "mbpo"   # the RunConfig section holding total_steps
# the settings this algorithm reads (see fastmbrl.algorithms)
USES = ("model.", "sac.", "mbpo.", "algorithm.steps", "algorithm.max_episode_steps",
        "algorithm.progress")

log = logging.getLogger("fastmbrl.algorithms.mbpo")


def rollout_length(schedule, step):
    """MBPO's rollout length at environment step ``step``.

    ``schedule = (start_step, end_step, from_length, to_length)``: ``from_length`` up to
    ``start_step``, ``to_length`` from ``end_step`` on, linear in between (rounded down, as MBPO's
    ``int(...)``).
    """
    start, end, a, b = (int(v) for v in schedule)
    if step <= start or end <= start:
        return a if step <= start else b
    if step >= end:
        return b
    return int(a + (step - start) / (end - start) * (b - a))


class RefitSource(NamedTuple):
    """What one refit's model rollouts were made from: enough to make them again, bit for bit.

    Attributes
    ----------
    rows : int
        Environment-buffer rows the start states were drawn from (uniformly, from the first
        ``rows``).
    stream : int
        Index of the rollout random stream (``derive_seed(seed, STREAM_ROLLOUT, stream)``).
    length : int
        Rollout length k.
    model : fastmbrl.models.ModelArrays
        A copy of the model right after that refit.
    policy : fastmbrl.models.PolicyArrays
        A copy of the policy at that time.
    """

    rows: int
    stream: int
    length: int
    model: ModelArrays
    policy: PolicyArrays

    @classmethod
    def snapshot(cls, rows, stream, length, model, agent):
        """Copies of ``model``'s arrays and ``agent``'s actor (a SAC) as they are now."""
        return cls(int(rows), int(stream), int(length), _copy_arrays(model.arrays()),
                   _copy_arrays(PolicyArrays.from_agent(agent)))

    def state(self):
        """As a nested dict of arrays and JSON values (for a checkpoint)."""
        return {"rows": self.rows, "stream": self.stream, "length": self.length,
                "model": _plain(self.model), "policy": _plain(self.policy)}

    @classmethod
    def from_state(cls, state):
        """The inverse of :meth:`state`."""
        return cls(int(state["rows"]), int(state["stream"]), int(state["length"]),
                   ModelArrays(**state["model"]), PolicyArrays(**state["policy"]))


def _copy_arrays(arrays):
    return type(arrays)(*(np.array(v, copy=True) if isinstance(v, np.ndarray) else v
                          for v in arrays))


def _plain(arrays):
    return {k: (v.item() if isinstance(v, np.generic) else v)
            for k, v in arrays._asdict().items()}


class ModelBuffer:
    """The model buffer: the rollouts of the last ``retain`` refits, FIFO by refit.

    ``buffer`` is a ``fastmbrl.buffer.ReplayBuffer`` holding exactly the retained refits' rows
    (rebuilt when a refit's rollouts arrive), what ``SAC.update_from`` samples from.
    Non-finite rows (a diverging model) are dropped before they are stored, and counted in
    ``dropped``. ``sources`` holds each retained refit's :class:`RefitSource` (None where the
    caller gave none), what :meth:`state` checkpoints in place of the rows.
    """

    def __init__(self, retain, obs_dim, act_dim, dtype):
        from fastmbrl.buffer import ReplayBuffer

        self.retain, self.obs_dim, self.act_dim, self.dtype = int(retain), obs_dim, act_dim, dtype
        self.chunks = collections.deque(maxlen=self.retain)
        self.sources = collections.deque(maxlen=self.retain)
        self.buffer = ReplayBuffer(1, obs_dim, act_dim, dtype=dtype, overflow="wrap")
        self.dropped = 0

    def __len__(self):
        return len(self.buffer)

    def add_refit(self, batch, source=None):
        """Add one refit's rollouts (a ``RolloutBatch``, made from ``source``); the oldest refit
        beyond ``retain`` goes."""
        from fastmbrl.buffer import ReplayBuffer

        ok = (np.all(np.isfinite(batch.obs), axis=1) & np.all(np.isfinite(batch.next_obs), axis=1)
              & np.isfinite(batch.reward) & np.all(np.isfinite(batch.act), axis=1))
        if not ok.all():
            self.dropped += int((~ok).sum())
            log.warning("model rollouts: dropped %d non-finite transitions", int((~ok).sum()))
        self.chunks.append(tuple(np.ascontiguousarray(a[ok]) for a in batch[:5]))
        self.sources.append(source)
        total = sum(c[0].shape[0] for c in self.chunks)
        buf = ReplayBuffer(max(total, 1), self.obs_dim, self.act_dim, dtype=self.dtype,
                           overflow="wrap")
        for obs, act, rew, nxt, term in self.chunks:
            buf.add_batch(obs, act, rew, nxt, term, np.zeros(term.shape[0], bool))
        self.buffer = buf

    def state(self):
        """The retained refits' sources and the drop count, or None when a source is unknown."""
        if any(src is None for src in self.sources):
            return None
        return {"dropped": self.dropped,
                "refits": {str(i): src.state() for i, src in enumerate(self.sources)}}

    def restore(self, state, make_rollouts):
        """Refill from :meth:`state`'s output: ``make_rollouts(source) -> RolloutBatch`` makes
        each retained refit's rollouts again, oldest first."""
        refits = state["refits"]
        for i in range(len(refits)):
            source = RefitSource.from_state(refits[str(i)])
            self.add_refit(make_rollouts(source), source)
        self.dropped = int(state["dropped"])


def env_model(env, config, seed):
    """The GaussianEnsemble of ``config.model`` for ``env`` (an EnvSpec-resolved environment)."""
    from fastmbrl.algorithms.pets import make_model

    return make_model(env.obs_dim, env.act_dim, config, env.angle_dims, seed)


def model_env(model, env):
    """``model`` as a ModelEnv with ``env``'s reward and termination functions."""
    from fastmbrl.models import ModelEnv

    return ModelEnv(model, reward_fn=env.reward_fn, termination_fn=env.termination_fn)


def _model_based(mb):
    """Whether the update step uses the model (value expansion, SVG(H) or the actor's clip)."""
    return mb.critic_horizon > 1 or mb.actor_horizon > 0 or mb.actor_grad_clip > 0


def _model_based_updates(agent, menv, buffer, model_buffer, mb):
    """Line 7 with the switches: ``fastmbrl.agents._mb_grads.model_based_update_from`` on
    minibatches mixing real and (with ``dyna_rollouts``) model rows by ``real_ratio``."""
    from fastmbrl.agents._mb_grads import model_based_update_from

    with agent.kernel_context():
        return model_based_update_from(
            agent, menv, buffer, mb.updates_per_step,
            model_buffer=model_buffer.buffer if mb.dyna_rollouts else None,
            real_ratio=mb.real_ratio, critic_horizon=mb.critic_horizon,
            actor_horizon=mb.actor_horizon, actor_grad_clip=mb.actor_grad_clip or None,
            td_k=mb.td_k)


def with_preset(ctx, preset):
    """A copy of ``ctx`` whose configuration is ``preset(ctx.config)`` (the mve and svg modules:
    MBPO's loop with their switches set)."""
    ctx = copy.copy(ctx)
    ctx.config = preset(ctx.config)
    return ctx


def check(ctx):
    """Refuse what the run would fail on before anything is written: build the agent, the model
    and its ModelEnv, and run a 2-row rollout (checks the reward and termination functions)."""
    from fastmbrl.config import ConfigError

    cfg, env = ctx.config, ctx.env
    _sac.check(ctx)
    if cfg.mbpo.random_steps == 0 and cfg.sac.learning_starts < 2:
        raise ConfigError(f"sac.learning_starts: mbpo fits its model to the random steps, expected "
                          f"at least 2, got {cfg.sac.learning_starts}")
    if step_budget(cfg, cfg.mbpo) < 1:
        raise ValueError(f"steps: expected at least 1 environment step for mbpo, got "
                         f"{step_budget(cfg, cfg.mbpo)}")
    try:
        model = env_model(env, cfg, seed=0)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model: the settings cannot build the model ({exc})") from None
    if env.reward_fn is None and not cfg.model.learn_reward:
        raise ConfigError("model.learn_reward: mbpo needs a reward function (reward_fn=) or a "
                          "learned reward head (model.learn_reward=true), got neither")
    if (cfg.mbpo.actor_horizon > 0 and env.reward_fn is not None and not cfg.model.learn_reward
            and model_env(model, env).reward_grad_fn is None):
        raise ConfigError("mbpo.actor_horizon: actor gradients through the model need the reward's "
                          "gradient; this environment's reward_fn has none, set "
                          "model.learn_reward=true or mbpo.actor_horizon=0")
    agent = _sac.make_agent(env, cfg, seed=0, hidden=cfg.mbpo.hidden)
    model_env(model, env).rollout(agent, np.zeros((2, env.obs_dim)), 1,
                                   np.random.default_rng(0))


def run(ctx):
    """Run MBPO from ``ctx`` (a ``fastmbrl.algorithms._common.RunContext``); returns a RunResult."""
    cfg, env = ctx.config, ctx.env
    s, mb, m = cfg.sac, cfg.mbpo, cfg.model
    random_steps = mb.random_steps or s.learning_starts
    agent = _sac.make_agent(env, cfg, derive_seed(cfg.seed, STREAM_AGENT, 0), hidden=mb.hidden)
    model = env_model(env, cfg, derive_seed(cfg.seed, STREAM_MODEL, 0))
    loop = StepLoop(ctx, _sac.make_buffer(env, cfg), agent, step_budget(cfg, mb), s.eval_every,
                    s.eval_episodes, random_steps, model=model)
    state = {"refits": 0}
    resumed = loop.restore()
    if resumed:
        state = dict(loop.restored_state)
    model = loop.model
    menv = model_env(model, env)
    model_buffer = ModelBuffer(mb.model_retain, env.obs_dim, env.act_dim,
                               np.dtype(s.dtype).type)
    n_rollouts = mb.rollouts_per_step * mb.model_train_every

    def policy(obs):
        return agent.act(obs)

    def eval_policy(obs):
        return agent.act(obs, deterministic=True)

    def fit_model(lp):
        lp.refit(m, max_steps=mb.model_fit_steps or None, max_seconds=mb.model_fit_seconds)

    def make_rollouts(source):
        # ---- line 5: branched rollouts from real states with the policy, as of ``source`` -------
        rng = np.random.default_rng(derive_seed(cfg.seed, STREAM_ROLLOUT, source.stream))
        starts = loop.buffer.obs[rng.integers(0, source.rows, size=n_rollouts)]
        # one BLAS thread: spinning OpenBLAS teams collapse on a busy 2-core machine
        # (docs/performance.md)
        with limit_blas(1):
            return model_env(source.model, env).rollout(source.policy, starts, source.length,
                                                         rng)

    def model_rollouts(lp, stream_index):
        t0 = time.perf_counter()
        source = RefitSource.snapshot(len(lp.buffer), stream_index,
                                      rollout_length(mb.rollout_schedule, lp.steps), model, agent)
        model_buffer.add_refit(make_rollouts(source), source)
        lp.model_rows = len(model_buffer)
        lp.times["rollout"] += time.perf_counter() - t0

    if resumed and state["refits"] > 0 and mb.dyna_rollouts:
        if loop.restored_algo_state is not None:
            # the retained refits' rollouts, made again from their sources: bit-identical
            model_buffer.restore(loop.restored_algo_state["model_buffer"], make_rollouts)
        else:
            # a checkpoint of an older fastmbrl: one refit's worth from the restored model/policy
            log.warning("resume: the checkpoint holds no model-buffer sources (older fastmbrl); "
                        "regenerating one refit's rollouts, so this run is no longer bit-identical "
                        "to an uninterrupted one")
            model_rollouts(loop, 1_000_000 + state["refits"])

    def train(lp):
        t = lp.steps
        if t >= random_steps and (t - random_steps) % mb.model_train_every == 0:
            # ---- lines 3-5: refit the model, then the rollouts that fill the model buffer -------
            fit_model(lp)
            state["refits"] += 1
            if mb.dyna_rollouts:
                model_rollouts(lp, state["refits"])
        if not mb.dyna_rollouts or _model_based(mb):
            # ---- value expansion / actor gradients through the model (mve, svg presets) ---------
            if state["refits"] > 0 and mb.updates_per_step > 0:
                t0 = time.perf_counter()
                _model_based_updates(agent, menv, lp.buffer, model_buffer, mb)
                lp.times["update"] += time.perf_counter() - t0
                lp.counters["updates"] += mb.updates_per_step
        elif len(model_buffer) and mb.updates_per_step > 0:
            # ---- line 7: SAC updates on mixed real / model minibatches --------------------------
            t0 = time.perf_counter()
            agent.update_from(lp.buffer, mb.updates_per_step, model_buffer=model_buffer.buffer,
                              real_ratio=mb.real_ratio)
            lp.times["update"] += time.perf_counter() - t0
            lp.counters["updates"] += mb.updates_per_step

    def algo_state():
        buffer_state = model_buffer.state()
        return None if buffer_state is None else {"model_buffer": buffer_state}

    stopped = loop.run(policy, eval_policy, train, extra_state=lambda: dict(state),
                       algo_state=algo_state)
    result = loop.result(cfg, stopped, model=model)
    result.model_buffer = model_buffer
    return result
