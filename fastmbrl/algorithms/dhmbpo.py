"""DHMBPO: double-horizon model-based policy optimization (Kubo, Parmas, Ishii, TMLR 2025).

The notes' three uses of a model at once (5.2 Dyna data, 5.3 model-based critic targets, 5.4 actor
gradients through the model), with two horizons:

    1: collect dhmbpo.random_steps uniformly random steps into the environment buffer D_env
    2: for each environment step t:
    3:     every dhmbpo.model_train_every steps: fit the ensemble to D_env; with
           dhmbpo.clear_rounds empty D_roll; then dhmbpo.critic_warmup critic-only updates (line 6
           without the actor and the temperature) from one fresh distribution rollout
    4:     act in the environment with the policy, add the transition to D_env
    5:     every dhmbpo.update_every steps, update_every x dhmbpo.updates_per_step updates (the
           first training step also catches up one update per random step; update_every=1
           interleaves updates and acting); before every dhmbpo.rollout_every-th update a
           *distribution* rollout:
           dhmbpo.rollout_starts states from D_env rolled dhmbpo.rollout_length steps through the
           model with the current policy; the states it visits replace the oldest round of the
           state buffer D_roll, which keeps dhmbpo.rounds_kept rounds; the model's Gaussian is
           sampled in this rollout and the training rollout of line 6 (dhmbpo.model_noise=false:
           each row's member predicts its mean)
    6:     one update (``fastmbrl.agents.double_horizon``) from a minibatch of D_roll's states:
           a *training* rollout of dhmbpo.horizon steps, the critic ensemble fitted to its
           h-step soft return, the actor's gradient backpropagated through it (SVG(h))
    7:     every sac.eval_every steps: evaluate the deterministic policy, one results row,
           checkpoint; one row of ``train_metrics.csv`` in the run folder (``TRAIN_METRICS``:
           the segment's mean update metrics and the critic's bounds; ``result.train_metrics``)

The actor is a ``fastmbrl.agents.SAC``'s (its twin critics are unused); the critic is an
``EnsembleCritic`` (dhmbpo.critic_members members with layer normalization and dropout). Resume is
exact: the checkpoint holds the critic and D_roll's rounds besides what every step-based run keeps.
"""
import dataclasses
import logging
import os
import time

import numpy as np

from fastmbrl._io import atomic_write_csv
from fastmbrl._threads import limit_blas
from fastmbrl.agents.sac import METRICS
from fastmbrl.algorithms.mbpo import env_model, model_env
from fastmbrl.algorithms.sac import make_buffer
from fastmbrl.backend import kernels
from fastmbrl.algorithms._seeding import STREAM_AGENT, STREAM_MODEL, STREAM_ROLLOUT, derive_seed
from fastmbrl.algorithms._step_loop import StepLoop, step_budget

__all__ = ["run", "check", "make_agent", "make_critic", "reset_optimizers", "StateRounds",
           "BUDGET", "TRAIN_METRICS"]

BUDGET = "steps"
SECTION = "dhmbpo"   # the RunConfig section holding total_steps
USES = ("model.", "sac.", "dhmbpo.", "algorithm.steps", "algorithm.max_episode_steps",
        "algorithm.progress")
STREAM_CRITIC = 7
STREAM_WARMUP = 8   # the distribution rollouts before the critic-only updates, one per refit
# columns of train_metrics.csv: the updates' metrics (fastmbrl.agents.sac.METRICS) averaged over
# the segment since the previous evaluation, then the critic's bounds [q_lb, q_ub] at its end
TRAIN_METRICS = ("steps", "updates", *METRICS, "q_lb", "q_ub")

log = logging.getLogger("fastmbrl.algorithms.dhmbpo")


class StateRounds:
    """The states of the last ``retain`` distribution rollouts (D_roll), FIFO by round."""

    def __init__(self, retain, obs_dim, dtype):
        self.retain, self.obs_dim, self.dtype = int(retain), int(obs_dim), dtype
        self.clear()

    def __len__(self):
        return self._all.shape[0]

    def add(self, states):
        """Add one round's states (non-finite rows dropped); the oldest round beyond ``retain``
        goes."""
        states = np.asarray(states, self.dtype)
        states = np.ascontiguousarray(states[np.all(np.isfinite(states), axis=1)])
        self.rounds.append(states)
        del self.rounds[:-self.retain]
        self._all = np.concatenate(self.rounds)

    def clear(self):
        """No rounds (the state at construction)."""
        self.rounds = []
        self._all = np.empty((0, self.obs_dim), self.dtype)

    def rows(self, idx):
        return np.ascontiguousarray(self._all[idx])

    def state(self):
        return {str(i): r for i, r in enumerate(self.rounds)}

    def restore(self, state):
        self.clear()
        self.rounds = [np.ascontiguousarray(state[str(i)], self.dtype) for i in range(len(state))]
        if self.rounds:
            self._all = np.concatenate(self.rounds)


def make_agent(env, config, seed):
    """The SAC whose actor and temperature DHMBPO trains (``sac`` section, with the ``dhmbpo``
    section's hidden widths, discount and initial temperature)."""
    from fastmbrl.agents import SAC
    from fastmbrl.algorithms.sac import update_threads

    s, d = config.sac, config.dhmbpo
    return SAC(env.obs_dim, env.act_dim, env.env.action_space, hidden=tuple(d.hidden),
               gamma=d.gamma, tau=s.tau, lr=s.lr, batch_size=s.batch_size,
               init_temperature=d.init_temperature, dtype=np.dtype(s.dtype).type, seed=seed,
               n_threads=update_threads(s.n_threads))


def make_critic(env, config, seed):
    """The critic ensemble of the ``dhmbpo`` section."""
    from fastmbrl.agents.ensemble_critic import EnsembleCritic

    s, d = config.sac, config.dhmbpo
    return EnsembleCritic(env.obs_dim, env.act_dim, tuple(d.critic_hidden), d.critic_members,
                          ln_eps=d.critic_ln_eps, dropout=d.critic_dropout, lr=s.lr, tau=s.tau,
                          lower_bound=d.critic_lower_bound,
                          target_members=d.critic_target_members, dtype=np.dtype(s.dtype).type,
                          seed=seed)


def reset_optimizers(agent, critic):
    """Restart the Adam optimizers of the actor and the temperature (``agent``) and of the critic
    ensemble: moments and step counts to zero."""
    agent.actor_m[...] = 0.0
    agent.actor_v[...] = 0.0
    agent.alpha_state[1:] = 0.0
    agent.steps[1:] = 0
    critic.adam_m[...] = 0.0
    critic.adam_v[...] = 0.0
    critic.rng[2] = 0


def _model_config(config):
    """The configuration with the dhmbpo section's model overrides applied to ``model``."""
    d, m = config.dhmbpo, config.model
    changes = {}
    if d.model_hidden:
        changes["hidden"] = tuple(d.model_hidden)
    if d.model_members:
        changes["ensemble_size"] = d.model_members
        changes["num_elites"] = d.model_members
    return dataclasses.replace(config, model=dataclasses.replace(m, **changes)) if changes \
        else config


def check(ctx):
    """Refuse what the run would fail on before anything is written."""
    from fastmbrl.config import ConfigError

    cfg, env = _model_config(ctx.config), ctx.env
    if step_budget(cfg, cfg.dhmbpo) < 1:
        raise ValueError(f"steps: expected at least 1 environment step for dhmbpo, got "
                         f"{step_budget(cfg, cfg.dhmbpo)}")
    try:
        agent = make_agent(env, cfg, seed=0)
        make_critic(env, cfg, seed=0)
        model = env_model(env, cfg, seed=0)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"dhmbpo: the settings cannot build the agent, critic or model "
                          f"({exc})") from None
    if env.reward_fn is None and not cfg.model.learn_reward:
        raise ConfigError("model.learn_reward: dhmbpo needs a reward function (reward_fn=) or a "
                          "learned reward head (model.learn_reward=true), got neither")
    menv = model_env(model, env)
    if env.reward_fn is not None and not cfg.model.learn_reward and menv.reward_grad_fn is None:
        raise ConfigError("dhmbpo.horizon: the actor's gradient through the model needs the "
                          "reward's gradient (reward_grad_fn); this environment's reward_fn has "
                          "none, set model.learn_reward=true")
    menv.rollout(agent, np.zeros((2, env.obs_dim)), 1, np.random.default_rng(0))


def run(ctx):
    """Run DHMBPO from ``ctx`` (a ``fastmbrl.algorithms._context.RunContext``); returns a
    RunResult."""
    from fastmbrl.agents.double_horizon import double_horizon_update
    from fastmbrl.agents.obs_scaling import ObsScaling

    cfg = _model_config(ctx.config)
    env, s, d, m = ctx.env, cfg.sac, cfg.dhmbpo, cfg.model
    agent = make_agent(env, cfg, derive_seed(cfg.seed, STREAM_AGENT, 0))
    critic = make_critic(env, cfg, derive_seed(cfg.seed, STREAM_CRITIC, 0))
    model = env_model(env, cfg, derive_seed(cfg.seed, STREAM_MODEL, 0))
    loop = StepLoop(ctx, make_buffer(env, cfg), agent, step_budget(cfg, d),
                    s.eval_every, s.eval_episodes, d.random_steps, model=model)
    dtype = np.dtype(s.dtype).type
    rounds = StateRounds(d.rounds_kept, env.obs_dim, dtype)
    state = {"refits": 0, "updates": 0, "metric_sums": [0.0] * len(METRICS), "metric_rows": []}
    scaling = ObsScaling(agent, critic) if d.normalize_inputs else None
    if loop.restore():
        state = {"metric_sums": [0.0] * len(METRICS), "metric_rows": [],
                 **loop.restored_state}     # (checkpoints of before train_metrics lack them)
        critic.load_state_dict(loop.restored_algo_state["critic"])
        rounds.restore(loop.restored_algo_state["rounds"])
        if scaling is not None:
            scaling.load_state_dict(loop.restored_algo_state["inputs"])
    model = loop.model
    menv = model_env(model, env)
    sample_indices = kernels("fastmbrl.agents._sac_rng_kernels")._sac_sample_indices

    def fit_model(lp):
        lp.refit(m, max_steps=d.model_fit_steps or None)

    def distribution_rollout(lp, seed):
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        starts = lp.buffer.obs[rng.integers(0, len(lp.buffer), size=d.rollout_starts)]
        with limit_blas(1):
            batch = menv.rollout(agent, starts, d.rollout_length, rng,
                                 model_noise=None if d.model_noise else 0)
        rounds.add(batch.obs)
        lp.model_rows = len(rounds)
        lp.times["rollout"] += time.perf_counter() - t0

    def one_update(train_actor):
        idx = np.empty(agent.batch_size, np.int64)
        sample_indices(agent.rng_state, len(rounds), idx)
        with agent.kernel_context():
            return double_horizon_update(agent, critic, menv, rounds.rows(idx), d.horizon,
                                         scaling=scaling, model_noise=d.model_noise,
                                         train_actor=train_actor)

    def update(lp, n):
        for _ in range(n):
            if state["updates"] % d.rollout_every == 0:
                distribution_rollout(lp, derive_seed(cfg.seed, STREAM_ROLLOUT, state["updates"]))
            t0 = time.perf_counter()
            metrics = one_update(train_actor=True)
            for i, v in enumerate(metrics.values()):
                state["metric_sums"][i] += v
            lp.times["update"] += time.perf_counter() - t0
            state["updates"] += 1
            lp.counters["updates"] += 1

    def critic_warmup(lp):
        distribution_rollout(lp, derive_seed(cfg.seed, STREAM_WARMUP, state["refits"]))
        t0 = time.perf_counter()
        for _ in range(d.critic_warmup):
            one_update(train_actor=False)
        lp.times["update"] += time.perf_counter() - t0

    def train(lp):
        t = lp.steps
        if t < d.random_steps:
            return
        if (t - d.random_steps) % d.model_train_every == 0:
            fit_model(lp)
            state["refits"] += 1
            if scaling is not None:
                scaling.set_stats(lp.buffer.obs)
            if d.reset_optimizers:
                reset_optimizers(agent, critic)
            if d.clear_rounds:
                rounds.clear()
                lp.model_rows = len(rounds)
            if d.critic_warmup:
                critic_warmup(lp)
        if (t - d.random_steps) % d.update_every == 0:
            n = d.updates_per_step * d.update_every
            if state["updates"] == 0 and d.catch_up:
                n += d.updates_per_step * d.random_steps
            update(lp, n)
        if lp.steps % lp.eval_every == 0 or lp.steps >= lp.total_steps:
            close_segment(lp)    # an evaluation (and the checkpoint) follows this step

    def close_segment(lp):
        rows = state["metric_rows"]
        n = state["updates"] - (rows[-1]["updates"] if rows else 0)   # this segment's updates
        means = [v / n if n else float("nan") for v in state["metric_sums"]]
        row = [lp.steps, state["updates"], *means, float(critic.scalars[0]),
               float(critic.scalars[1])]
        rows.append(dict(zip(TRAIN_METRICS, row)))
        state["metric_sums"] = [0.0] * len(METRICS)
        if lp.ctx.out_dir is not None:
            atomic_write_csv(os.path.join(lp.ctx.out_dir, "train_metrics.csv"), TRAIN_METRICS,
                             rows)

    def policy(obs):
        return agent.act(obs)

    def eval_policy(obs):
        return agent.act(obs, deterministic=True)

    def algo_state():
        out = {"critic": critic.state_dict(), "rounds": rounds.state()}
        if scaling is not None:
            out["inputs"] = scaling.state_dict()
        return out

    stopped = loop.run(policy, eval_policy, train, extra_state=lambda: dict(state),
                       algo_state=algo_state)
    result = loop.result(cfg, stopped, model=model)
    result.critic = critic
    result.train_metrics = list(state["metric_rows"])
    return result
