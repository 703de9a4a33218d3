"""PETS: Algorithm 1 of the course notes (model-based RL with MPC over a learned ensemble).

    1: collect initial data with random actions into the buffer B
    2: for i in 1..N:
    3:     fit the model to B                       (warm start from the previous fit)
    4:     build the policy: MPC with the model     (planner x particles x reward_fn)
    5:     collect an episode with it, add it to B

``run(ctx)`` is that loop; collection, records, results files and checkpoints come from
``fastmbrl.algorithms._collect``, ``_records`` and ``_checkpoints``. Budget: ``episodes``
(``algorithm.episodes``); PETS refuses a step budget (``steps=`` / ``--steps`` /
``algorithm.steps``) because it plans whole episodes.
The ``random`` algorithm is this loop with uniformly random actions and no model (the baseline).

Reproducibility: the environment of episode i is reset with a seed derived from (seed, i), the
agent of episode i is built afresh from (seed, i) (so PETS keeps no state across episodes and
checkpoints need none), and the model's generator state is checkpointed with its weights.
"""
import inspect
import logging
import time

import numpy as np

from fastmbrl._config import PLANNERS
from fastmbrl._threads import limit_blas, resolve_threads
from fastmbrl.algorithms._checkpoints import load_run_checkpoint, save_run_checkpoint
from fastmbrl.algorithms._collect import collect_episode, collect_initial_data
from fastmbrl.algorithms._records import RunResult, summary, write_results
from fastmbrl.algorithms._seeding import STREAM_ENV, STREAM_MODEL, STREAM_PLANNER, derive_seed

__all__ = ["BUDGET", "bonus_weight_at", "check", "fit_model", "make_agent", "make_model", "make_planner",
           "run"]

BUDGET = "episodes"
# the settings this algorithm reads (see fastmbrl.algorithms)
USES = ("model.", "planner.", "algorithm.")

log = logging.getLogger("fastmbrl.algorithms.pets")


# ---------------------------------------------------------------------------------------------
# building blocks: the model, the planner and the agent a RunConfig describes
# ---------------------------------------------------------------------------------------------
def make_model(obs_dim, act_dim, config, angle_dims, seed):
    """Build the GaussianEnsemble a RunConfig's ``model`` section describes."""
    from fastmbrl.models import GaussianEnsemble

    m = config.model
    return GaussianEnsemble(obs_dim, act_dim, hidden=m.hidden, ensemble_size=m.ensemble_size,
                            num_elites=m.num_elites, activation=m.activation, predict_delta=True,
                            angle_dims=angle_dims, learn_reward=m.learn_reward,
                            dtype=np.dtype(m.dtype).type, seed=seed, lr=m.lr,
                            weight_decay=m.weight_decay, n_threads=model_threads(m.n_threads))


def model_threads(n_threads):
    """The fit threads a ``model.n_threads`` setting means ('auto': 2 with 2 or more cores and a
    build with OpenMP, else 1): ``fastmbrl._threads.resolve_threads`` with the fused step's rule
    (``fastmbrl.nn.train.fit_threads_pay``), as ``GaussianEnsemble`` resolves it."""
    from fastmbrl.nn.train import fit_threads_pay

    return resolve_threads(n_threads, fit_threads_pay)


def make_planner(config, seed):
    """Build the trajectory optimizer a RunConfig's ``planner`` section describes.

    Settings the chosen optimizer does not take (e.g. ``elite_frac`` for MPPI) are left out;
    ``planner.options`` are passed as given.
    """
    from fastmbrl import planning

    p = config.planner
    cls = getattr(planning, PLANNERS[p.name])
    wanted = {"horizon": p.horizon, "population": p.population, "elite_frac": p.elite_frac,
              "iterations": p.iterations, "alpha": p.alpha, "seed": seed}
    params = inspect.signature(cls).parameters
    takes_any = any(v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values())
    kwargs = {k: v for k, v in wanted.items() if takes_any or k in params}
    kwargs.update(p.options)
    return cls(**kwargs)


def bonus_weight_at(config, episode):
    """The optimism bonus weight episode ``episode`` (1-based; None: the first) plans with.

    ``w * max(0, 1 - (episode - 1) / bonus_decay_episodes)``, or ``w`` when the decay is 0: the
    disagreement already shrinks where data accumulates; the schedule guarantees that late
    episodes optimise the plain return.
    """
    p = config.planner
    if p.bonus_weight <= 0 or p.bonus_decay_episodes <= 0 or episode is None:
        return float(p.bonus_weight)
    return float(p.bonus_weight) * max(0.0, 1.0 - (episode - 1) / p.bonus_decay_episodes)


def make_agent(model, action_space, reward_fn, termination_fn, config, seed, episode=None):
    """Build the PETS agent of one episode (its planner and rollout seeded from ``seed``; the
    optimism bonus weighted for ``episode``, see :func:`bonus_weight_at`)."""
    from fastmbrl import agents

    planner_seed, rollout_seed = np.random.SeedSequence(seed).generate_state(2)
    planner = make_planner(config, int(planner_seed))
    return agents.PETS(model, reward_fn, action_space, planner=planner,
                       particles=config.planner.particles,
                       propagation=config.planner.propagation, termination_fn=termination_fn,
                       seed=int(rollout_seed), bonus_weight=bonus_weight_at(config, episode))


def fit_model(model, buffer, model_config):
    """Fit ``model`` to the whole ``buffer`` with a RunConfig's ``model`` settings.

    Returns
    -------
    history : FitHistory
    seconds : float
    """
    m = model_config
    t0 = time.perf_counter()
    # One BLAS thread: OpenBLAS's spinning thread team is several times slower than one thread on
    # these small products when the other core is busy (docs/performance.md, Threads).
    with limit_blas(1):
        history = model.fit(buffer.obs, buffer.act, buffer.next_obs,
                            buffer.reward if m.learn_reward else None, max_epochs=m.max_epochs,
                            batch_size=m.batch_size, holdout_frac=m.holdout_frac,
                            patience=m.patience, progress=False)
    return history, time.perf_counter() - t0


def _close(agent):
    close = getattr(agent, "close", None)
    if callable(close):
        close()


def check(ctx, random_policy=False):
    """Refuse what this run would fail on, before anything is written: build the model, the
    planner and the agent once from the configuration (a bad ``planner.options`` entry, an MPPI
    temperature of 0, a reward function the rollout rejects all raise here)."""
    alg = ctx.config.algorithm
    if alg.steps is not None:
        raise ValueError(f"steps: pets counts episodes, not environment steps (got steps="
                         f"{alg.steps}); use episodes=N (--episodes N)")
    if random_policy:
        return
    from fastmbrl.config import ConfigError

    if alg.initial_steps < 2:
        raise ConfigError(f"algorithm.initial_steps: pets fits its model to the random steps "
                          f"first, expected at least 2, got {alg.initial_steps}")

    env, cfg = ctx.env, ctx.config
    try:
        make_planner(cfg, seed=0)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"planner: {cfg.planner.name} with options {cfg.planner.options} cannot "
                          f"be built ({exc})") from None
    try:
        model = make_model(env.obs_dim, env.act_dim, cfg, env.angle_dims, seed=0)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model: the settings cannot build the model ({exc})") from None
    agent = make_agent(model, env.env.action_space, env.reward_fn, env.termination_fn, cfg, seed=0)
    _close(agent)


# ---------------------------------------------------------------------------------------------
# Algorithm 1
# ---------------------------------------------------------------------------------------------
def run(ctx, random_policy=False):
    """Run PETS (Algorithm 1) from ``ctx`` (a ``fastmbrl.algorithms._common.RunContext``).

    With ``random_policy`` every episode acts uniformly at random and no model is fitted.

    Returns
    -------
    RunResult
    """
    from fastmbrl import agents
    from fastmbrl.buffer import ReplayBuffer

    cfg, env, cbs = ctx.config, ctx.env, ctx.callbacks
    alg, m = cfg.algorithm, cfg.model

    # ---- state: fresh, or from the last checkpoint ----------------------------------------------
    restored = load_run_checkpoint(ctx)
    if restored is not None:
        done, buffer, model, records, initial_records, _ = restored
        if len(records) != done:
            raise ValueError(f"resume: checkpoint in {ctx.out_dir!r} is inconsistent "
                             f"({len(records)} records for episode {done})")
    else:
        records = []
        buffer = ReplayBuffer(alg.buffer_capacity, env.obs_dim, env.act_dim,
                              dtype=np.dtype(m.dtype).type, overflow="wrap")
        # ---- line 1: initial data from uniformly random actions ---------------------------------
        initial_records = collect_initial_data(ctx, buffer)
        model = None if random_policy else make_model(
            env.obs_dim, env.act_dim, cfg, env.angle_dims, derive_seed(cfg.seed, STREAM_MODEL, 0))
        save_run_checkpoint(ctx, 0, buffer, model, records, initial_records)
    start = len(records) + 1
    for cb in cbs:
        cb.on_run_start(cfg, start)

    stopped_early, agent = False, None
    last = records[-1] if records else initial_records[-1]
    t_start = time.perf_counter() - last.wall_time
    steps = last.steps
    for episode in range(start, alg.episodes + 1):
        # ---- line 3: fit the model to the whole buffer (warm start) -----------------------------
        fit_time, fit_epochs, holdout_mse = 0.0, 0, float("nan")
        if model is not None:
            if not alg.warm_start:
                model = make_model(env.obs_dim, env.act_dim, cfg, env.angle_dims,
                                   derive_seed(cfg.seed, STREAM_MODEL, episode))
            history, fit_time = fit_model(model, buffer, m)
            fit_epochs = int(history.epochs_run)
            if history.holdout_mse.size:
                holdout_mse = float(np.mean(history.best_holdout_mse))
            for cb in cbs:
                cb.on_fit_end(episode, history)

        # ---- line 4: the policy is MPC with the fitted model ------------------------------------
        # A fresh agent per episode, seeded from (seed, episode), so a resumed run plans exactly
        # as an uninterrupted one would.
        _close(agent)
        agent_seed = derive_seed(cfg.seed, STREAM_PLANNER, episode)
        agent = agents.RandomAgent(env.env.action_space, agent_seed) if random_policy else \
            make_agent(model, env.env.action_space, env.reward_fn, env.termination_fn, cfg,
                       agent_seed, episode=episode)
        agent.reset()

        # ---- line 5: collect an episode into the buffer -----------------------------------------
        record, stop = collect_episode(env.env, agent.act, buffer,
                                       derive_seed(cfg.seed, STREAM_ENV, episode),
                                       ctx.max_episode_steps, ctx.on_step_hook(episode))
        steps += record.length
        record.episode, record.steps, record.buffer_size = episode, steps, len(buffer)
        record.fit_time, record.fit_epochs, record.holdout_mse = fit_time, fit_epochs, holdout_mse
        record.wall_time = time.perf_counter() - t_start
        records.append(record)
        log.info("episode %d: return %.2f length %d fit %.2fs act %.1f ms/step", episode,
                 record.ret, record.length, fit_time, record.ms_per_action)

        # ---- checkpoint (first, so results never get ahead of a resumable state), results -------
        save_run_checkpoint(ctx, episode, buffer, model, records, initial_records)
        if ctx.out_dir is not None:
            write_results(ctx.out_dir, cfg, records, initial_records,
                          summary(records, initial_records, record.wall_time))
        for cb in cbs:
            stop = bool(cb.on_episode_end(record)) or stop
        if stop and episode < alg.episodes:
            stopped_early = True
            break

    if ctx.out_dir is not None and records:
        write_results(ctx.out_dir, cfg, records, initial_records,
                      summary(records, initial_records, records[-1].wall_time))
    return RunResult(config=cfg, records=records, initial_records=initial_records, model=model,
                     agent=agent, buffer=buffer, stopped_early=stopped_early, out_dir=ctx.out_dir)
