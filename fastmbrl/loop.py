"""The model-based RL loop: Algorithm 1 of the course notes, as the thing users run.

    1: collect initial data with random actions into the buffer B
    2: for i in 1..N:
    3:     fit the model to B                       (warm start from the previous fit)
    4:     build the policy: MPC with the model     (PETS: planner x particles x reward_fn)
    5:     collect an episode with it, add it to B

``run`` is one readable function with section banners; what it returns is a :class:`RunResult`.
With ``out_dir`` it also writes the resolved configuration, per-episode results (CSV and JSON), a
learning-curve PNG and, after every episode, a checkpoint that ``run(..., resume=True)`` continues
from with exactly the data and state an uninterrupted run would have had.
"""
import csv
import dataclasses
import inspect
import io
import json
import logging
import os
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from threadpoolctl import threadpool_limits

from fastmbrl import config as _cfg
from fastmbrl._checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from fastmbrl._io import atomic_write_text

__all__ = ["run", "RunResult", "Callback", "EpisodeRecord"]

log = logging.getLogger("fastmbrl.loop")

# Independent random streams, derived from the run seed (SeedSequence entropy [seed, stream, i]).
_STREAM_ENV, _STREAM_PLANNER, _STREAM_RANDOM_ACTIONS, _STREAM_INITIAL_ENV, _STREAM_MODEL = range(5)
RESULTS_FIELDS = ("episode", "return", "length", "terminated", "fit_time", "fit_epochs",
                  "holdout_mse", "act_time", "env_time", "ms_per_action", "wall_time",
                  "buffer_size")


def _derive_seed(seed, stream, index):
    return int(np.random.SeedSequence([int(seed), stream, int(index)]).generate_state(1)[0])


@dataclass
class EpisodeRecord:
    """What happened in one episode (episode 0 is the random-action data).

    Times are wall-clock seconds: ``fit_time`` the model refit before the episode, ``act_time`` all
    ``agent.act`` calls, ``env_time`` all ``env.step`` calls.
    """

    episode: int
    ret: float
    length: int
    terminated: bool
    fit_time: float = 0.0
    fit_epochs: int = 0
    holdout_mse: float = float("nan")
    act_time: float = 0.0
    env_time: float = 0.0
    wall_time: float = 0.0
    buffer_size: int = 0

    @property
    def ms_per_action(self):
        """Mean planning time per action in milliseconds."""
        return 1000.0 * self.act_time / max(self.length, 1)

    def to_dict(self):
        """The record as a flat dict with the RESULTS_FIELDS keys."""
        d = dataclasses.asdict(self)
        d["return"] = d.pop("ret")
        d["ms_per_action"] = self.ms_per_action
        return {k: d[k] for k in RESULTS_FIELDS}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        kw = {k: d[k] for k in RESULTS_FIELDS if k not in ("return", "ms_per_action")}
        return cls(ret=float(d["return"]), **kw)


@dataclass
class RunResult:
    """The outcome of :func:`run`.

    Attributes
    ----------
    config : RunConfig
        The resolved configuration.
    records : list of EpisodeRecord
        Model-based episodes 1..n, in order.
    initial_records : list of EpisodeRecord
        The random-action episodes that made the initial data.
    model, agent, buffer :
        The trained model, the last episode's agent and the replay buffer.
    stopped_early : bool
        True when a callback asked to stop before ``episodes``.
    out_dir : str or None
    """

    config: object
    records: list
    initial_records: list
    model: object
    agent: object
    buffer: object
    stopped_early: bool = False
    out_dir: object = None

    returns = property(lambda self: np.array([r.ret for r in self.records]),
                       doc="float64 array (episodes,): return of each model-based episode")
    lengths = property(lambda self: np.array([r.length for r in self.records], dtype=np.int64),
                       doc="int64 array (episodes,): steps of each episode")
    fit_times = property(lambda self: np.array([r.fit_time for r in self.records]),
                         doc="float64 array (episodes,): seconds spent refitting the model")
    act_times = property(lambda self: np.array([r.act_time for r in self.records]),
                         doc="float64 array (episodes,): seconds spent in agent.act")
    env_times = property(lambda self: np.array([r.env_time for r in self.records]),
                         doc="float64 array (episodes,): seconds spent in env.step")


class Callback:
    """Hooks into :func:`run`. Override any; a plain callable is used as ``on_episode_end``.

    Returning True from ``on_episode_end`` (or ``on_step``) stops the run after the current
    episode (after its checkpoint is written).
    """

    def on_run_start(self, config, start_episode):
        """Called once, before the first episode this call runs."""

    def on_fit_end(self, episode, history):
        """Called after each refit with the model's FitHistory."""

    def on_step(self, episode, step, max_steps):
        """Called after each environment step of a model-based episode (max_steps: the episode's
        step limit, or None when unknown)."""

    def on_episode_end(self, record):
        """Called after each model-based episode (and its checkpoint)."""


class _CallableCallback(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_episode_end(self, record):
        return self.fn(record)


class _DuckCallback(Callback):
    """Any object with some of Callback's hook methods (the missing ones do nothing)."""

    def __init__(self, obj):
        for hook in ("on_run_start", "on_fit_end", "on_step", "on_episode_end"):
            if callable(getattr(obj, hook, None)):
                setattr(self, hook, getattr(obj, hook))


def _as_callback(cb):
    if isinstance(cb, Callback):
        return cb
    if any(callable(getattr(cb, h, None)) for h in ("on_run_start", "on_fit_end", "on_step",
                                                     "on_episode_end")):
        return _DuckCallback(cb)
    if callable(cb):
        return _CallableCallback(cb)
    raise TypeError(f"callbacks: expected Callback objects or callables, got {cb!r}")


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------
def _resolve_env(env, reward_fn, termination_fn, angle_dims, env_kwargs):
    """Return (gym env, env id, reward_fn, termination_fn, angle_dims, spec or None)."""
    from fastmbrl import envs as fenvs

    spec = None
    if isinstance(env, str):
        try:
            spec = fenvs.get_spec(env)
        except fenvs.UnknownEnvError:
            if reward_fn is None:
                raise
            try:
                env_obj = gym.make(env, **(env_kwargs or {}))
            except gym.error.Error as exc:
                raise ValueError(f"env: {env!r} is neither a fastmbrl spec nor a gymnasium id "
                                 f"({exc})") from None
            env_id = env
        else:
            if not spec.available:
                fenvs.make(spec.id)  # raises the ImportError naming the missing extra
            env_obj = spec.factory(**(env_kwargs or {}))
            env_id = spec.id
    elif isinstance(env, gym.Env):
        if reward_fn is None:
            raise ValueError("reward_fn: required when env is a gymnasium.Env object, got None")
        env_obj = env
        env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    else:
        raise TypeError(f"env: expected an environment id (str) or a gymnasium.Env, got "
                        f"{type(env).__name__}")
    for name, space in (("observation_space", env_obj.observation_space),
                        ("action_space", env_obj.action_space)):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"env: expected a 1-D Box {name}, got {space}")
    if not np.all(np.isfinite(env_obj.action_space.low)) or not np.all(
            np.isfinite(env_obj.action_space.high)):
        raise ValueError("env: the action space must have finite bounds for planning")
    if spec is not None:
        reward_fn = spec.reward_fn if reward_fn is None else reward_fn
        if termination_fn is None:
            termination_fn = spec.planning_termination_fn or spec.termination_fn
        angle_dims = spec.angle_dims if angle_dims is None else angle_dims
    return env_obj, env_id, reward_fn, termination_fn, tuple(angle_dims or ()), spec


def _resolve_config(env_id, spec, config, episodes, seed):
    base = _cfg.RunConfig(env=env_id)
    if spec is not None:
        base = _cfg.from_dict(spec.defaults, base=base)
    if config is None:
        resolved = base
    elif isinstance(config, _cfg.RunConfig):
        resolved = dataclasses.replace(config, env=env_id)
    elif isinstance(config, dict):
        resolved = _cfg.from_dict({k: v for k, v in config.items() if k != "env"}, base=base)
    else:
        raise TypeError(f"config: expected a RunConfig or a dict, got {type(config).__name__}")
    overrides = {}
    if episodes is not None:
        overrides["algorithm"] = {"episodes": episodes}
    if seed is not None:
        overrides["seed"] = seed
    return _cfg.from_dict(overrides, base=resolved) if overrides else resolved


def make_model(obs_dim, act_dim, config, angle_dims, seed):
    """Build the GaussianEnsemble a RunConfig's ``model`` section describes."""
    from fastmbrl.models import GaussianEnsemble

    m = config.model
    return GaussianEnsemble(obs_dim, act_dim, hidden=m.hidden, ensemble_size=m.ensemble_size,
                            num_elites=m.num_elites, activation=m.activation, predict_delta=True,
                            angle_dims=angle_dims, learn_reward=m.learn_reward,
                            dtype=np.dtype(m.dtype).type, seed=seed, lr=m.lr,
                            weight_decay=m.weight_decay)


def make_planner(config, seed):
    """Build the trajectory optimizer a RunConfig's ``planner`` section describes.

    Settings the chosen optimizer does not take (e.g. ``elite_frac`` for MPPI) are left out;
    ``planner.options`` are passed as given.
    """
    from fastmbrl import planning

    p = config.planner
    classes = {"cem": "CEM", "icem": "ICEM", "mppi": "MPPI", "rs": "RandomShooting"}
    cls = getattr(planning, classes[p.name])
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


def make_agent(kind, model, action_space, reward_fn, termination_fn, config, seed, episode=None):
    """Build the acting agent for one episode ('pets', 'random' or a factory callable)."""
    from fastmbrl import agents

    if callable(kind) and not isinstance(kind, str):
        return kind(model=model, action_space=action_space, reward_fn=reward_fn,
                    termination_fn=termination_fn, config=config, seed=seed)
    if kind == "random":
        return agents.RandomAgent(action_space, seed)
    planner_seed, rollout_seed = np.random.SeedSequence(seed).generate_state(2)
    planner = make_planner(config, int(planner_seed))
    return agents.PETS(model, reward_fn, action_space, planner=planner,
                       particles=config.planner.particles,
                       propagation=config.planner.propagation, termination_fn=termination_fn,
                       seed=int(rollout_seed), bonus_weight=bonus_weight_at(config, episode))


def _close(agent):
    close = getattr(agent, "close", None)
    if callable(close):
        close()


def _rollout_episode(env, policy, buffer, env_seed, max_steps, on_step=None):
    """Run one episode, adding every transition to ``buffer``; returns (record, stop)."""
    obs, _ = env.reset(seed=env_seed)
    ret, length, terminated, act_time, env_time, stop = 0.0, 0, False, 0.0, 0.0, False
    while True:
        t0 = time.perf_counter()
        action = policy(obs)
        t1 = time.perf_counter()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        t2 = time.perf_counter()
        act_time += t1 - t0
        env_time += t2 - t1
        length += 1
        truncated = bool(truncated) or (max_steps is not None and length >= max_steps)
        buffer.add(obs, action, float(reward), next_obs, bool(terminated), truncated)
        ret += float(reward)
        obs = next_obs
        if on_step is not None and on_step(length):
            stop = True
        if terminated or truncated:
            break
    return EpisodeRecord(episode=0, ret=ret, length=length, terminated=bool(terminated),
                         act_time=act_time, env_time=env_time), stop


def write_results(out_dir, config, records, initial_records, summary=None):
    """Write results.csv, results.json and learning_curve.png into ``out_dir``."""
    from fastmbrl._plot import plot_learning_curve

    rows = [r.to_dict() for r in records]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RESULTS_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_text(os.path.join(out_dir, "results.csv"), buf.getvalue())
    payload = {"env": config.env, "seed": config.seed, "episodes": rows,
               "initial": [r.to_dict() for r in initial_records], "summary": summary or {}}
    atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(payload, indent=1))
    baseline = float(np.mean([r.ret for r in initial_records])) if initial_records else None
    tmp = os.path.join(out_dir, f"learning_curve.png.tmp{os.getpid()}")
    plot_learning_curve(tmp, [r.ret for r in records], baseline=baseline)
    os.replace(tmp, os.path.join(out_dir, "learning_curve.png"))


def _summary(records, initial_records, t_start_wall):
    returns = [r.ret for r in records]
    return {"episodes": len(records),
            "random_return": float(np.mean([r.ret for r in initial_records]))
            if initial_records else None,
            "best_return": max(returns) if returns else None,
            "last_return": returns[-1] if returns else None,
            "fit_time": float(sum(r.fit_time for r in records)),
            "act_time": float(sum(r.act_time for r in records)),
            "env_time": float(sum(r.env_time for r in records)),
            "wall_time": t_start_wall}


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def run(env="Pendulum-v1", agent="pets", episodes=None, seed=None, config=None, *,
        reward_fn=None, termination_fn=None, angle_dims=None, callbacks=(), out_dir=None,
        resume=False, env_kwargs=None):
    """Run model-based RL (Algorithm 1 of the course notes) and return what happened.

    Parameters
    ----------
    env : str or gymnasium.Env
        A fastmbrl spec id (``fastmbrl.envs.list_specs()``), any gymnasium id (then pass
        ``reward_fn``), or an environment object (then pass ``reward_fn``). Observations and
        actions must be 1-D Boxes with finite action bounds.
    agent : {"pets", "random"} or callable
        The policy of steps 4-5. A callable is a factory ``f(model=, action_space=, reward_fn=,
        termination_fn=, config=, seed=) -> agent`` with ``act(obs)`` and ``reset()``, built
        afresh for every episode.
    episodes : int, optional
        Model-based episodes N (overrides ``config.algorithm.episodes``). On resume, a larger value
        extends the run.
    seed : int, optional
        Seed of every random stream (overrides ``config.seed``).
    config : RunConfig or dict, optional
        Settings (a dict is applied on top of the environment's defaults; see fastmbrl.config).
    reward_fn, termination_fn : callable, optional
        ``f(obs (N, D_obs), act (N, D_act), next_obs (N, D_obs))`` -> (N,) float / bool. Default:
        the spec's exact functions. Numba ``@njit`` functions run inside the compiled rollout.
    angle_dims : sequence of int, optional
        Observation dims that are angles (default: the spec's).
    callbacks : sequence of Callback or callable
        Watchers; a callable gets each EpisodeRecord; returning True stops the run early.
    out_dir : str or os.PathLike, optional
        Folder for config.json, results.csv/json, learning_curve.png and checkpoints.
    resume : bool
        Continue the run checkpointed in ``out_dir`` (its config.json wins over ``config``).
    env_kwargs : dict, optional
        Keywords for the environment's constructor.

    Returns
    -------
    RunResult

    Raises
    ------
    ValueError, TypeError, KeyError
        On bad arguments, naming the argument (unknown env ids raise
        ``fastmbrl.envs.UnknownEnvError``, a KeyError).

    Notes
    -----
    Reproducibility: the environment is reset with a seed derived from (seed, episode), the planner
    of episode i is seeded from (seed, i) and the model's generator state is checkpointed, so a
    resumed run collects exactly the transitions of an uninterrupted one (up to BLAS determinism).
    """
    from fastmbrl.buffer import ReplayBuffer

    t_start = time.perf_counter()
    cbs = [_as_callback(cb) for cb in (callbacks or ())]
    if resume and out_dir is None:
        raise ValueError("resume: needs out_dir, the folder of the run to continue")
    if not (agent in ("pets", "random") or (callable(agent) and not isinstance(agent, str))):
        raise ValueError(f"agent: expected 'pets', 'random' or a factory callable, got {agent!r}")

    # ---- configuration ------------------------------------------------------------------------
    saved = None
    if resume:
        config_path = os.path.join(os.fspath(out_dir), "config.json")
        try:
            with open(config_path, encoding="utf-8") as fh:
                saved = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"resume: cannot read {config_path!r} ({exc})") from None
        if isinstance(env, str) and env != saved.get("env") and saved.get("env"):
            env = saved["env"]
    env_obj, env_id, reward_fn, termination_fn, angle_dims, spec = _resolve_env(
        env, reward_fn, termination_fn, angle_dims, env_kwargs)
    if saved is not None:
        cfg = _cfg.from_dict({k: v for k, v in saved.items() if k != "env"},
                             base=_cfg.RunConfig(env=env_id))
        if episodes is not None:
            cfg = _cfg.from_dict({"algorithm": {"episodes": episodes}}, base=cfg)
    else:
        cfg = _resolve_config(env_id, spec, config, episodes, seed)
    alg = cfg.algorithm
    obs_dim = int(env_obj.observation_space.shape[0])
    act_dim = int(env_obj.action_space.shape[0])
    max_steps = alg.max_episode_steps
    env_limit = getattr(getattr(env_obj, "spec", None), "max_episode_steps", None)
    step_limit = max_steps if env_limit is None else min(max_steps or env_limit, env_limit)
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        atomic_write_text(os.path.join(out_dir, "config.json"),
                          json.dumps(_cfg.to_dict(cfg), indent=1))

    # ---- state: fresh, or from the last checkpoint ----------------------------------------------
    records, initial_records = [], []
    model = None
    if resume and has_checkpoint(out_dir):
        done, buffer, model, state = load_checkpoint(out_dir)
        records = [EpisodeRecord.from_dict(d) for d in state["records"]]
        initial_records = [EpisodeRecord.from_dict(d) for d in state["initial_records"]]
        if len(records) != done:
            raise ValueError(f"resume: checkpoint in {out_dir!r} is inconsistent "
                             f"({len(records)} records for episode {done})")
        if (buffer.obs_dim, buffer.act_dim) != (obs_dim, act_dim):
            raise ValueError(f"resume: checkpoint buffer has dims {(buffer.obs_dim, buffer.act_dim)}"
                             f", the environment {(obs_dim, act_dim)}")
        log.info("resuming %s after episode %d (%d transitions)", out_dir, done, len(buffer))
    else:
        if resume:
            log.info("resume: no checkpoint in %s yet; starting fresh", out_dir)
        buffer = ReplayBuffer(alg.buffer_capacity, obs_dim, act_dim,
                              dtype=np.dtype(cfg.model.dtype).type, overflow="wrap")

        # ---- Algorithm 1, line 1: initial data from uniformly random actions ------------------
        rng = np.random.default_rng(_derive_seed(cfg.seed, _STREAM_RANDOM_ACTIONS, 0))
        low = env_obj.action_space.low.astype(np.float64)
        high = env_obj.action_space.high.astype(np.float64)
        dtype = env_obj.action_space.dtype

        def random_policy(obs):
            return rng.uniform(low, high).astype(dtype)

        k = 0
        while len(buffer) < alg.initial_steps:
            remaining = alg.initial_steps - len(buffer)
            cap = remaining if max_steps is None else min(max_steps, remaining)
            rec, _ = _rollout_episode(env_obj, random_policy, buffer,
                                      _derive_seed(cfg.seed, _STREAM_INITIAL_ENV, k), cap)
            rec.episode = -k
            rec.buffer_size = len(buffer)
            rec.wall_time = time.perf_counter() - t_start
            initial_records.append(rec)
            k += 1
        if agent != "random":
            model = make_model(obs_dim, act_dim, cfg, angle_dims,
                               _derive_seed(cfg.seed, _STREAM_MODEL, 0))
        if out_dir is not None:
            save_checkpoint(out_dir, 0, buffer, model,
                            {"records": [], "initial_records": [r.to_dict() for r in initial_records]})
    start = len(records) + 1
    for cb in cbs:
        cb.on_run_start(cfg, start)

    stopped_early = False
    current_agent = None
    wall_before = records[-1].wall_time if records else (
        initial_records[-1].wall_time if initial_records else 0.0)
    t_start = time.perf_counter() - wall_before
    for episode in range(start, alg.episodes + 1):
        # ---- Algorithm 1, line 3: fit the model to the whole buffer (warm start) ---------------
        fit_time, fit_epochs, holdout_mse = 0.0, 0, float("nan")
        if model is not None:
            if not alg.warm_start:
                model = make_model(obs_dim, act_dim, cfg, angle_dims,
                                   _derive_seed(cfg.seed, _STREAM_MODEL, episode))
            m = cfg.model
            t0 = time.perf_counter()
            # One BLAS thread: OpenBLAS's spinning thread team is several times slower than one
            # thread on these small products when the other core is busy (PERF.md, Threads).
            with threadpool_limits(limits=1, user_api="blas"):
                history = model.fit(buffer.obs, buffer.act, buffer.next_obs,
                                    buffer.reward if m.learn_reward else None,
                                    max_epochs=m.max_epochs, batch_size=m.batch_size,
                                    holdout_frac=m.holdout_frac, patience=m.patience,
                                    progress=False)
            fit_time = time.perf_counter() - t0
            fit_epochs = int(history.epochs_run)
            if history.holdout_mse.size:
                holdout_mse = float(np.mean(history.best_holdout))
            for cb in cbs:
                cb.on_fit_end(episode, history)

        # ---- Algorithm 1, line 4: the policy is MPC with the fitted model ----------------------
        # A fresh agent per episode, seeded from (seed, episode), so a resumed run plans exactly
        # as an uninterrupted one would.
        _close(current_agent)
        current_agent = make_agent(agent, model, env_obj.action_space, reward_fn, termination_fn,
                                   cfg, _derive_seed(cfg.seed, _STREAM_PLANNER, episode),
                                   episode=episode)
        current_agent.reset()

        # ---- Algorithm 1, line 5: collect an episode into the buffer ---------------------------
        def on_step(step, _episode=episode):
            stop = False
            for cb in cbs:
                stop = bool(cb.on_step(_episode, step, step_limit)) or stop
            return stop

        record, stop = _rollout_episode(env_obj, current_agent.act, buffer,
                                        _derive_seed(cfg.seed, _STREAM_ENV, episode), max_steps,
                                        on_step if cbs else None)
        record.episode = episode
        record.fit_time, record.fit_epochs, record.holdout_mse = fit_time, fit_epochs, holdout_mse
        record.buffer_size = len(buffer)
        record.wall_time = time.perf_counter() - t_start
        records.append(record)
        log.info("episode %d: return %.2f length %d fit %.2fs act %.1f ms/step", episode,
                 record.ret, record.length, fit_time, record.ms_per_action)

        # ---- log, checkpoint, let callbacks watch or stop --------------------------------------
        if out_dir is not None:
            # Checkpoint first, so the results files never get ahead of a resumable state.
            save_checkpoint(out_dir, episode, buffer, model,
                            {"records": [r.to_dict() for r in records],
                             "initial_records": [r.to_dict() for r in initial_records]})
            write_results(out_dir, cfg, records, initial_records,
                          _summary(records, initial_records, record.wall_time))
        for cb in cbs:
            stop = bool(cb.on_episode_end(record)) or stop
        if stop and episode < alg.episodes:
            stopped_early = True
            break

    if out_dir is not None and records:
        write_results(out_dir, cfg, records, initial_records,
                      _summary(records, initial_records, records[-1].wall_time))
    return RunResult(config=cfg, records=records, initial_records=initial_records, model=model,
                     agent=current_agent, buffer=buffer, stopped_early=stopped_early,
                     out_dir=out_dir)
