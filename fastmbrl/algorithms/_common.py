"""What every training loop needs: the run context, episode collection, evaluation, records,
callbacks, results files, checkpoint/resume and seeded random streams.

An algorithm module (``fastmbrl/algorithms/<name>.py``) receives a :class:`RunContext` built here
(environment resolved, configuration resolved and checked, output folder ready) and returns a
:class:`RunResult`. Everything in this module is algorithm-agnostic.
"""
import copy
import csv
import dataclasses
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from fastmbrl import config as _cfg
from fastmbrl._checkpoint import (checkpoint_folders, checkpoints_folder, has_checkpoint,
                                  load_checkpoint, read_checkpoint_state, save_checkpoint)
from fastmbrl._config import DEFAULT_MAX_EPISODE_STEPS
from fastmbrl._io import atomic_write_text, remove_stale_temporaries, temporary_path

__all__ = ["RunContext", "RunResult", "EpisodeRecord", "Callback", "as_callback", "derive_seed",
           "collect_episode", "collect_initial_data", "evaluate", "write_results", "summary",
           "save_run_checkpoint", "load_run_checkpoint", "RESULTS_FIELDS", "STREAM_ENV",
           "STREAM_PLANNER", "STREAM_RANDOM_ACTIONS", "STREAM_INITIAL_ENV", "STREAM_MODEL",
           "STREAM_AGENT", "STREAM_EVAL_ENV", "STREAM_ROLLOUT", "EvalRecord", "StepCollector",
           "StepLoop", "step_budget", "step_summary", "STEP_RESULTS_FIELDS"]

log = logging.getLogger("fastmbrl.algorithms")

# ---------------------------------------------------------------------------------------------
# seeded random streams
# ---------------------------------------------------------------------------------------------
# Independent streams derived from the run seed (SeedSequence entropy [seed, stream, i]). The
# numbers are part of the results' identity: never renumber, only append.
(STREAM_ENV, STREAM_PLANNER, STREAM_RANDOM_ACTIONS, STREAM_INITIAL_ENV, STREAM_MODEL,
 STREAM_AGENT, STREAM_EVAL_ENV) = range(7)


def derive_seed(seed, stream, index):
    """A 32-bit seed for item ``index`` of random ``stream`` of the run seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed), stream, int(index)]).generate_state(1)[0])


# ---------------------------------------------------------------------------------------------
# records and results
# ---------------------------------------------------------------------------------------------
RESULTS_FIELDS = ("episode", "return", "length", "terminated", "fit_time", "fit_epochs",
                  "holdout_mse", "act_time", "env_time", "ms_per_action", "wall_time",
                  "buffer_size", "steps")


@dataclass
class EpisodeRecord:
    """What happened in one episode (pets: episode 0, -1, ... are the random-action data) or, for
    a step-based algorithm, one evaluation.

    Times are wall-clock seconds: ``fit_time`` model/agent training before the episode,
    ``act_time`` all ``agent.act`` calls, ``env_time`` all ``env.step`` calls, ``wall_time`` since
    the run started (summed over resumed sessions). ``steps`` counts environment steps of the run
    so far, random data included.
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
    steps: int = 0

    @property
    def ms_per_action(self):
        """Mean time per action in milliseconds."""
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


EpisodeRecord.FIELDS = RESULTS_FIELDS


def _record_column(field_name, dtype, what):
    """A read-only property: ``field_name`` of every record, as one array (records,).

    ``dtype`` None keeps NumPy's choice (float64 for the float fields)."""
    name = "int64" if dtype is np.int64 else "float64"
    return property(lambda self: np.array([getattr(r, field_name) for r in self.records],
                                          dtype=dtype),
                    doc=f"{name} array (records,): {what}")


@dataclass
class RunResult:
    """The outcome of ``fastmbrl.run``.

    Attributes
    ----------
    config : RunConfig
        The resolved configuration.
    records : list of EpisodeRecord
        One per episode (pets: model-based episodes 1..n) or per evaluation (step-based).
    initial_records : list of EpisodeRecord
        The random-action episodes that made the initial data.
    model, agent, buffer :
        The trained model (or None), the last agent and the replay buffer.
    stopped_early : bool
        True when a callback asked to stop before the budget was spent.
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

    steps = _record_column("steps", np.int64, "environment steps of the run so far")
    returns = _record_column("ret", None, "return of each episode (eval mean)")
    wall_times = _record_column("wall_time", None, "seconds since the run started")
    lengths = _record_column("length", np.int64, "steps of each episode")
    fit_times = _record_column("fit_time", None, "seconds spent training")
    act_times = _record_column("act_time", None, "seconds spent in agent.act")
    env_times = _record_column("env_time", None, "seconds spent in env.step")


def write_results(out_dir, config, records, initial_records, summary=None):
    """Write results.csv, results.json and learning_curve.png into ``out_dir`` (atomically)."""
    from fastmbrl.plot import plot_learning_curve

    rows = [r.to_dict() for r in records]
    fields = type(records[0]).FIELDS if records else RESULTS_FIELDS
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_text(os.path.join(out_dir, "results.csv"), buf.getvalue())
    payload = {"env": config.env, "algorithm": config.algorithm.name, "seed": config.seed,
               "episodes": rows, "initial": [r.to_dict() for r in initial_records],
               "summary": summary or {}}
    atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(payload, indent=1))
    baseline = float(np.mean([r.ret for r in initial_records])) if initial_records else None
    final = os.path.join(out_dir, "learning_curve.png")
    tmp = temporary_path(final)
    if plot_learning_curve(tmp, [r.ret for r in records], baseline=baseline) is not None:
        os.replace(tmp, final)      # None: matplotlib is not installed (warned once), no PNG


def summary(records, initial_records, wall_time):
    """The ``summary`` block of results.json."""
    returns = [r.ret for r in records]
    return {"episodes": len(records),
            "steps": records[-1].steps if records else None,
            "random_return": float(np.mean([r.ret for r in initial_records]))
            if initial_records else None,
            "best_return": max(returns) if returns else None,
            "last_return": returns[-1] if returns else None,
            "fit_time": float(sum(r.fit_time for r in records)),
            "act_time": float(sum(r.act_time for r in records)),
            "env_time": float(sum(r.env_time for r in records)),
            "wall_time": wall_time}


# ---------------------------------------------------------------------------------------------
# callbacks
# ---------------------------------------------------------------------------------------------
class Callback:
    """Hooks into a run. Override any; a plain callable is used as ``on_episode_end``.

    Returning True from ``on_episode_end`` (or ``on_step``) stops the run after the current
    episode (after its checkpoint is written).
    """

    def on_run_start(self, config, start_episode):
        """Called once, before the first episode this call runs."""

    def on_fit_end(self, episode, history):
        """Called after each model refit with the model's FitHistory."""

    def on_step(self, episode, step, max_steps):
        """Called after each environment step of a learning episode (max_steps: the episode's
        step limit, or None when unknown)."""

    def on_episode_end(self, record):
        """Called after each episode / evaluation record (and its checkpoint)."""


_HOOKS = ("on_run_start", "on_fit_end", "on_step", "on_episode_end")


class _CallableCallback(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_episode_end(self, record):
        return self.fn(record)


class _DuckCallback(Callback):
    """Any object with some of Callback's hook methods (the missing ones do nothing)."""

    def __init__(self, obj):
        for hook in _HOOKS:
            if callable(getattr(obj, hook, None)):
                setattr(self, hook, getattr(obj, hook))


def as_callback(cb):
    """A Callback from a Callback, an object with some hook methods, or a callable."""
    if isinstance(cb, Callback):
        return cb
    if any(callable(getattr(cb, h, None)) for h in _HOOKS):
        return _DuckCallback(cb)
    if callable(cb):
        return _CallableCallback(cb)
    raise TypeError(f"callbacks: expected Callback objects or callables, got {cb!r}")


# ---------------------------------------------------------------------------------------------
# the run context
# ---------------------------------------------------------------------------------------------
@dataclass
class RunContext:
    """Everything an algorithm module's ``run(ctx)`` starts from.

    Attributes
    ----------
    config : RunConfig
        Resolved and checked (``config.algorithm.name`` is the algorithm).
    env : fastmbrl.envs.ResolvedEnv
        The training environment with its reward/termination functions.
    max_episode_steps : int or None
        The cap to pass to :func:`collect_episode` (None: the environment's time limit ends
        episodes); set to ``DEFAULT_MAX_EPISODE_STEPS`` when the environment has no limit.
    step_limit : int or None
        An episode's actual step limit (shown by progress bars).
    callbacks : list of Callback
    out_dir : str or None
    resume : bool
        True when ``out_dir`` holds a checkpoint to continue from.
    t_start : float
        ``time.perf_counter()`` when the call started.
    env_kwargs : dict
        The environment constructor's keywords (for :meth:`make_env`).
    """

    config: object
    env: object
    max_episode_steps: object
    step_limit: object
    callbacks: list = field(default_factory=list)
    out_dir: object = None
    resume: bool = False
    t_start: float = 0.0
    env_kwargs: dict = field(default_factory=dict)

    def make_env(self):
        """A fresh instance of the training environment (for evaluation on its own instance)."""
        spec = self.env.spec
        if spec is not None:
            return spec.factory(**self.env_kwargs)
        if self.env.env.spec is not None:
            import gymnasium as gym

            return gym.make(self.env.env.spec, **self.env_kwargs)
        return copy.deepcopy(self.env.env)

    def on_step_hook(self, episode):
        """An ``on_step(step) -> stop`` function that forwards to the callbacks, or None."""
        if not self.callbacks:
            return None
        cbs, limit = self.callbacks, self.step_limit

        def on_step(step):
            stop = False
            for cb in cbs:
                stop = bool(cb.on_step(episode, step, limit)) or stop
            return stop
        return on_step


def episode_limits(config, env):
    """``(max_episode_steps, step_limit)`` for a run: see :class:`RunContext`.

    An environment without a time limit and no ``algorithm.max_episode_steps`` would never end an
    episode; then episodes are cut at ``DEFAULT_MAX_EPISODE_STEPS`` and a warning says so.
    """
    max_steps = config.algorithm.max_episode_steps
    env_limit = env.time_limit
    if max_steps is None and env_limit is None:
        log.warning("%s declares no time limit and algorithm.max_episode_steps is unset: episodes "
                    "are cut at %d steps (set algorithm.max_episode_steps to change it)",
                    env.env_id, DEFAULT_MAX_EPISODE_STEPS)
        max_steps = DEFAULT_MAX_EPISODE_STEPS
    step_limit = max_steps if env_limit is None else min(max_steps or env_limit, env_limit)
    return max_steps, step_limit


def prepare_output(out_dir, config):
    """Create ``out_dir``, remove stale temporaries of killed writes, write config.json."""
    os.makedirs(out_dir, exist_ok=True)
    parent = checkpoints_folder(out_dir)            # refuses a symlinked checkpoints/
    for folder in [out_dir] + [os.path.join(parent, d) for d in checkpoint_folders(out_dir)]:
        for path in remove_stale_temporaries(folder):
            log.info("removed %s, left by a killed write", path)
    atomic_write_text(os.path.join(out_dir, "config.json"),
                      json.dumps(_cfg.to_dict(config), indent=1))


# ---------------------------------------------------------------------------------------------
# collecting data and evaluating
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
# checkpoints
# ---------------------------------------------------------------------------------------------
def save_run_checkpoint(ctx, episode, buffer, model, records, initial_records, agent=None,
                        extra=None, algo_state=None):
    """Checkpoint the run after ``episode`` (a no-op without ``out_dir``); the agent's
    ``state_dict()`` is stored when ``agent`` is given, ``extra`` (JSON values) in state.json and
    ``algo_state`` (a nested dict with arrays) beside it."""
    if ctx.out_dir is None:
        return
    state = {"config": _cfg.to_dict(ctx.config), "records": [r.to_dict() for r in records],
             "initial_records": [r.to_dict() for r in initial_records], **(extra or {})}
    save_checkpoint(ctx.out_dir, episode, buffer, model, state, agent=agent,
                    algo_state=algo_state)


# Settings a resume may change: the budget (to extend a run) and the progress display. Everything
# else shaped the checkpoint.
RESUME_MAY_CHANGE = ("algorithm.episodes", "algorithm.steps", "sac.total_steps", "mbpo.total_steps",
                     "algorithm.progress")


def _flat_settings(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("env_kwargs", "options"):
            out.update(_flat_settings(value, name + "."))
        else:
            out[name] = value
    return out


def check_resume_settings(ctx, preset=None):
    """Refuse to resume ``ctx.out_dir`` with settings other than those its checkpoint was made
    with (the checkpoint's own record, not config.json, which may have been edited since).
    ``preset(config)``, when given, is the algorithm's preset (the checkpoint records the
    configuration its loop ran with).

    Raises
    ------
    ValueError
        Naming every changed key with its recorded and its current value (budget keys, which
        extend a run, may change: ``RESUME_MAY_CHANGE``).
    """
    if not (ctx.resume and has_checkpoint(ctx.out_dir)):
        return
    recorded = read_checkpoint_state(ctx.out_dir).get("config")
    if not isinstance(recorded, dict):
        log.warning("resume: the checkpoint in %s holds no record of its settings (an older "
                    "fastmbrl); they are not checked", ctx.out_dir)
        return
    before = _flat_settings(recorded)
    now = _flat_settings(_cfg.to_dict(ctx.config if preset is None else preset(ctx.config)))
    changed = [k for k in sorted(set(before) | set(now))
               if k not in RESUME_MAY_CHANGE and before.get(k) != now.get(k)]
    if changed:
        what = "; ".join(f"{k}: {before.get(k)!r} in the checkpoint, {now.get(k)!r} now"
                         for k in changed)
        raise ValueError(f"resume: the settings of {ctx.out_dir!r} differ from those its "
                         f"checkpoint was made with ({what}); restore config.json, or start a new "
                         "run in another folder")


def load_run_checkpoint(ctx, agent=None, record_cls=None):
    """The last checkpoint of ``ctx.out_dir`` checked against the environment, or None when the
    run starts fresh.

    Returns
    -------
    None or (episode, buffer, model, records, initial_records, state)
    """
    if not (ctx.resume and has_checkpoint(ctx.out_dir)):
        if ctx.resume:
            log.info("resume: no checkpoint in %s yet; starting fresh", ctx.out_dir)
        return None
    done, buffer, model, state = load_checkpoint(ctx.out_dir, agent=agent)
    try:
        cls = EpisodeRecord if record_cls is None else record_cls
        records = [cls.from_dict(d) for d in state["records"]]
        initial = [EpisodeRecord.from_dict(d) for d in state["initial_records"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"resume: checkpoint in {ctx.out_dir!r} has damaged records "
                         f"({type(exc).__name__}: {exc})") from None
    dims = (ctx.env.obs_dim, ctx.env.act_dim)
    if (buffer.obs_dim, buffer.act_dim) != dims:
        raise ValueError(f"resume: checkpoint buffer has dims {(buffer.obs_dim, buffer.act_dim)}"
                         f", the environment {dims}")
    log.info("resuming %s after %d (%d transitions)", ctx.out_dir, done, len(buffer))
    return done, buffer, model, records, initial, state


# ---------------------------------------------------------------------------------------------
# step-based loops (sac, mbpo): step collection, periodic evaluation, records, checkpoints
# ---------------------------------------------------------------------------------------------
# Streams of the step-based loops (appended after the episode-based ones; never renumber).
STREAM_ROLLOUT = 7

STEP_RESULTS_FIELDS = ("evaluation", "steps", "return", "return_std", "length", "wall_time",
                       "updates", "updates_per_s", "env_time", "act_time", "update_time",
                       "fit_time", "fit_epochs", "holdout_mse", "rollout_time", "model_rows",
                       "eval_time", "train_episodes", "buffer_size")
# the time split of a segment (what each row reports since the previous evaluation)
TIMERS = ("env", "act", "update", "fit", "rollout", "eval")


@dataclass
class EvalRecord:
    """One evaluation of a step-based run (one results row).

    ``ret`` / ``ret_std``: mean and standard deviation of the evaluation episodes' returns (the
    deterministic policy on its own environment instance), ``length`` their mean length (rounded). The
    times (seconds) and ``updates_per_s`` cover the segment since the previous evaluation:
    ``env_time`` training ``env.step`` calls, ``act_time`` training actions, ``update_time`` SAC
    updates, ``fit_time`` model refits, ``rollout_time`` model rollouts, ``eval_time`` the
    evaluation itself. ``updates`` and ``steps`` are cumulative; ``wall_time`` is since the run
    started (summed over resumed sessions). ``model_rows``: rows in the model buffer (mbpo);
    ``fit_epochs`` the segment's refit epochs, ``holdout_mse`` the last refit's holdout MSE.
    """

    episode: int
    steps: int
    ret: float
    ret_std: float = 0.0
    length: int = 0
    wall_time: float = 0.0
    updates: int = 0
    updates_per_s: float = 0.0
    env_time: float = 0.0
    act_time: float = 0.0
    update_time: float = 0.0
    fit_time: float = 0.0
    fit_epochs: int = 0
    holdout_mse: float = float("nan")
    rollout_time: float = 0.0
    model_rows: int = 0
    eval_time: float = 0.0
    train_episodes: int = 0
    buffer_size: int = 0
    segment_steps: int = 0

    FIELDS = STEP_RESULTS_FIELDS
    terminated = False

    @property
    def ms_per_action(self):
        """Mean time per training action of the segment, in milliseconds."""
        return 1000.0 * self.act_time / max(self.segment_steps, 1)

    def to_dict(self):
        """The record as a flat dict with the STEP_RESULTS_FIELDS keys."""
        d = dataclasses.asdict(self)
        d["return"], d["return_std"], d["evaluation"] = d.pop("ret"), d.pop("ret_std"), d.pop(
            "episode")
        return {k: d[k] for k in STEP_RESULTS_FIELDS}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict` (``segment_steps`` is not stored and comes back 0)."""
        kw = {k: d[k] for k in STEP_RESULTS_FIELDS
              if k not in ("return", "return_std", "evaluation")}
        return cls(episode=int(d["evaluation"]), ret=float(d["return"]),
                   ret_std=float(d["return_std"]), **kw)


def step_summary(records, wall_time):
    """The ``summary`` block of a step-based run's results.json (totals of the time split)."""
    returns = [r.ret for r in records]
    out = {"evaluations": len(records), "steps": records[-1].steps if records else None,
           "best_return": max(returns) if returns else None,
           "last_return": returns[-1] if returns else None,
           "updates": records[-1].updates if records else 0, "wall_time": wall_time}
    for name in ("env_time", "act_time", "update_time", "fit_time", "rollout_time", "eval_time"):
        out[name] = float(sum(getattr(r, name) for r in records))
    return out


def _rng_state(rng):
    return copy.deepcopy(rng.bit_generator.state)


def _set_rng_state(rng, state):
    rng.bit_generator.state = state
    return rng


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


def step_budget(config, section):
    """Total environment steps of a step-based run: ``algorithm.steps`` or ``section.total_steps``."""
    steps = config.algorithm.steps
    return section.total_steps if steps is None else int(steps)


class StepLoop:
    """The outer loop shared by the step-based algorithms (sac, mbpo).

    For ``t = 1 .. total_steps``: act (uniformly random for the first ``random_steps`` steps, then
    ``policy``), step the environment into ``buffer`` (:class:`StepCollector`), call
    ``train(loop)`` (the algorithm's updates; it adds its seconds to ``loop.times``), and every
    ``eval_every`` steps and at the last step evaluate ``eval_policy`` for ``eval_episodes``
    episodes on a second environment instance, append an :class:`EvalRecord`, checkpoint, write
    the results files and call the callbacks (a callback returning True stops the run after that
    checkpoint).

    Checkpoints hold the buffer, the model, the agent's ``state_dict()``, the records, the
    collector's progress, the random-action generator, the cumulative counters and
    ``extra_state()`` of the algorithm; a resumed run (``ctx.resume``) continues exactly where the
    checkpoint was taken (see :class:`StepCollector` for the environment's state).

    Parameters
    ----------
    ctx : RunContext
    buffer : ReplayBuffer
        The environment buffer (replaced by the checkpoint's on resume).
    agent : object with ``state_dict`` / ``load_state_dict`` (or None)
    total_steps, eval_every, eval_episodes, random_steps : int
    model : GaussianEnsemble or None
        Checkpointed with the run (replaced by the checkpoint's on resume).
    """

    def __init__(self, ctx, buffer, agent, total_steps, eval_every, eval_episodes, random_steps,
                 model=None):
        cfg = ctx.config
        self.ctx, self.buffer, self.agent, self.model = ctx, buffer, agent, model
        self.total_steps, self.eval_every = int(total_steps), int(eval_every)
        self.eval_episodes, self.random_steps = int(eval_episodes), int(random_steps)
        env = ctx.env.env
        self.collector = StepCollector(env, buffer, cfg.seed, ctx.max_episode_steps)
        self.eval_env = ctx.make_env()
        self.random_rng = np.random.default_rng(derive_seed(cfg.seed, STREAM_RANDOM_ACTIONS, 0))
        self._low = env.action_space.low.astype(np.float64)
        self._high = env.action_space.high.astype(np.float64)
        self._act_dtype = env.action_space.dtype
        self.records = []
        self.times = {k: 0.0 for k in TIMERS}
        self.counters = {"updates": 0, "fit_epochs": 0}
        self.last_fit = {"holdout_mse": float("nan")}
        self.model_rows = 0
        self.wall_offset = 0.0
        self.restored_state = None
        self.restored_algo_state = None

    # ------------------------------------------------------------------ policies
    def random_action(self, obs):
        """A uniformly random action in the bounds (the first ``random_steps`` steps)."""
        return self.random_rng.uniform(self._low, self._high).astype(self._act_dtype)

    @property
    def steps(self):
        """Environment steps collected so far."""
        return self.collector.steps

    # ------------------------------------------------------------------ checkpoints
    def restore(self, record_cls=EvalRecord):
        """Load the last checkpoint of ``ctx.out_dir`` when resuming; returns True if one was
        loaded (then ``buffer``, ``model``, the agent, the records and the counters are the
        checkpoint's, ``restored_state`` holds the algorithm's ``extra`` entry and
        ``restored_algo_state`` its array state, None when the checkpoint has none)."""
        restored = load_run_checkpoint(self.ctx, agent=self.agent, record_cls=record_cls)
        if restored is None:
            return False
        done, buffer, model, records, _, state = restored
        if len(records) != done:
            raise ValueError(f"resume: checkpoint in {self.ctx.out_dir!r} is inconsistent "
                             f"({len(records)} records for evaluation {done})")
        try:
            loop = state["loop"]
            self.buffer = self.collector.buffer = buffer
            if model is not None:
                self.model = model
            self.records = records
            self.counters = dict(loop["counters"])
            self.times = {k: float(loop["times"][k]) for k in TIMERS}
            self.last_fit = dict(loop["last_fit"])
            self.model_rows = int(loop["model_rows"])
            self.wall_offset = float(loop["wall_time"])
            _set_rng_state(self.random_rng, loop["random_rng"])
            self.collector.restore(loop["collector"])
            self.collector.times = {"env": self.times["env"], "act": self.times["act"]}
            self.restored_state = state.get("extra")
            self.restored_algo_state = state.get("algo")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"resume: checkpoint in {self.ctx.out_dir!r} has a damaged loop state "
                             f"({type(exc).__name__}: {exc})") from None
        if self.collector.steps != self.buffer.n_added:
            raise ValueError(f"resume: checkpoint in {self.ctx.out_dir!r} is inconsistent "
                             f"({self.collector.steps} steps, {self.buffer.n_added} transitions)")
        return True

    def checkpoint(self, wall_time, extra=None, algo_state=None):
        """Write a checkpoint after the last record (a no-op without ``out_dir``)."""
        loop = {"counters": self.counters, "times": self.times, "last_fit": self.last_fit,
                "model_rows": self.model_rows, "wall_time": wall_time,
                "random_rng": _rng_state(self.random_rng), "collector": self.collector.state()}
        save_run_checkpoint(self.ctx, len(self.records), self.buffer, self.model, self.records, [],
                            agent=self.agent, extra={"loop": loop, "extra": extra},
                            algo_state=algo_state)

    # ------------------------------------------------------------------ the loop
    def run(self, policy, eval_policy, train, extra_state=None, algo_state=None):
        """Run the steps left of the budget.

        Parameters
        ----------
        policy : callable
            ``policy(obs) -> action`` once ``random_steps`` steps are collected.
        eval_policy : callable
            The deterministic policy evaluated.
        train : callable
            ``train(loop)`` after each environment step (the loop's ``steps`` already counts it).
        extra_state : callable, optional
            ``extra_state() -> JSON-serialisable`` stored with every checkpoint.
        algo_state : callable, optional
            ``algo_state() -> nested dict of arrays and JSON values`` stored with every
            checkpoint (``restored_algo_state`` on resume).

        Returns
        -------
        stopped_early : bool
        """
        ctx, cbs = self.ctx, self.ctx.callbacks
        t_start = time.perf_counter() - self.wall_offset
        for cb in cbs:
            cb.on_run_start(ctx.config, len(self.records) + 1)
        mark = dict(self.times)
        mark_updates, mark_steps = self.counters["updates"], self.steps
        mark_fit_epochs = self.counters["fit_epochs"]
        col = self.collector
        while self.steps < self.total_steps:
            # ---- act in the environment, store the transition -----------------------------------
            col.step(self.random_action if self.steps < self.random_steps else policy)
            stop = False
            for cb in cbs:
                stop = bool(cb.on_step(len(self.records) + 1, self.steps, self.total_steps)) or stop
            # ---- the algorithm's training after this step ---------------------------------------
            train(self)
            if self.steps % self.eval_every and self.steps < self.total_steps:
                continue
            # ---- evaluate the deterministic policy on its own environment -----------------------
            t0 = time.perf_counter()
            _, eval_recs = evaluate(eval_policy, self.eval_env, self.eval_episodes, ctx.config.seed,
                                    ctx.max_episode_steps)
            self.times["eval"] += time.perf_counter() - t0
            self.times["env"] = col.times["env"]
            self.times["act"] = col.times["act"]
            seg = {k: self.times[k] - mark[k] for k in TIMERS}
            n_upd = self.counters["updates"] - mark_updates
            rets = np.array([r.ret for r in eval_recs])
            wall = time.perf_counter() - t_start
            record = EvalRecord(
                episode=len(self.records) + 1, steps=self.steps, ret=float(rets.mean()),
                ret_std=float(rets.std()),
                length=int(round(float(np.mean([r.length for r in eval_recs])))),
                wall_time=wall, updates=self.counters["updates"],
                updates_per_s=n_upd / seg["update"] if seg["update"] > 0 else 0.0,
                env_time=seg["env"], act_time=seg["act"], update_time=seg["update"],
                fit_time=seg["fit"], fit_epochs=self.counters["fit_epochs"] - mark_fit_epochs,
                holdout_mse=float(self.last_fit["holdout_mse"]), rollout_time=seg["rollout"],
                model_rows=self.model_rows, eval_time=seg["eval"],
                train_episodes=col.episode, buffer_size=len(self.buffer),
                segment_steps=self.steps - mark_steps)
            self.records.append(record)
            log.info("step %d: eval return %.2f +- %.2f, wall %.1fs (env %.1f act %.1f updates %.1f "
                     "fit %.1f rollouts %.1f)", self.steps, record.ret, record.ret_std, wall,
                     seg["env"], seg["act"], seg["update"], seg["fit"], seg["rollout"])
            mark = dict(self.times)
            mark_updates, mark_steps = self.counters["updates"], self.steps
            mark_fit_epochs = self.counters["fit_epochs"]
            # ---- checkpoint first (results never get ahead of a resumable state), results -------
            self.checkpoint(wall, None if extra_state is None else extra_state(),
                            None if algo_state is None else algo_state())
            if ctx.out_dir is not None:
                write_results(ctx.out_dir, ctx.config, self.records, [],
                              step_summary(self.records, wall))
            for cb in cbs:
                stop = bool(cb.on_episode_end(record)) or stop
            if stop and self.steps < self.total_steps:
                return True
        return False
