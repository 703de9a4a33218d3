"""Training loops, one module per algorithm, and ``run`` that dispatches to them by name.

Registry: every public module of this package is an algorithm, named after the module
(``pets.py`` -> ``"pets"``). A new algorithm plugs in by adding one module that defines

    BUDGET = "episodes" or "steps"
        What ``episodes=`` / ``steps=`` (``algorithm.episodes`` / ``algorithm.steps``) count.
    check(ctx) -> None
        Raise (ValueError / ConfigError naming the setting) on anything the run would fail on,
        e.g. by building its agent once; called before anything is written to ``out_dir``.
    run(ctx) -> RunResult
        The loop, from a ``_common.RunContext`` (environment and configuration resolved, output
        folder ready, ``ctx.resume`` set when a checkpoint is to be continued).

and, when it has settings of its own, a section in ``fastmbrl.config.RunConfig``; optionally

    USES = ("model.", "sac.", "algorithm.steps", ...)
        Prefixes of the settings it reads: a setting given for a run of this algorithm that no
        prefix covers is reported with a warning (it has no effect).
Modules whose name starts with "_" are shared code, not algorithms: ``_common`` re-exports in one
import what a loop needs (``RunContext``, ``RunResult``, ``Callback``, ``collect_episode``,
``StepLoop``, ...), defined in ``_seeding``, ``_records``, ``_callbacks``, ``_context``,
``_collect``, ``_checkpoints`` and ``_step_loop``.
"""
import dataclasses
import importlib
import os
import time

from fastmbrl._io import confined, read_json_object, run_folder_lock

__all__ = ["available", "get", "run"]


def available():
    """Names of the known algorithms, sorted (the public modules of this package)."""
    from fastmbrl.config import algorithm_names

    return algorithm_names()


def get(name):
    """The module of algorithm ``name``.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    names = available()
    if not isinstance(name, str) or name not in names:
        raise ValueError(f"algorithm: expected one of {', '.join(names)}, got {name!r}")
    module = importlib.import_module(f"{__name__}.{name}")
    for attr in ("run", "check", "BUDGET"):
        if not hasattr(module, attr):
            raise TypeError(f"algorithm {name!r}: module {module.__name__} defines no {attr}")
    return module


def read_saved_config(out_dir):
    """The settings a run folder's ``config.json`` records (a dict, as written; ValueError naming
    the file when it is not a JSON object, or reached through a link out of the folder)."""
    return read_json_object(confined(out_dir, os.path.join(out_dir, "config.json"), "resume"),
                            "resume")


def _env_kwargs(env_kwargs, config, saved, out_dir):
    """The environment's keywords: a resumed run's own (refusing different ones), else the
    argument, else ``config``'s; checked as JSON values (``fastmbrl.config``)."""
    from fastmbrl import config as _cfg

    if env_kwargs is not None:
        env_kwargs = _cfg.from_dict({"env_kwargs": env_kwargs}).env_kwargs
    if saved is not None:
        recorded = _cfg.from_dict({"env_kwargs": saved.get("env_kwargs", {})}).env_kwargs
        if env_kwargs is not None and env_kwargs != recorded:
            raise ValueError(f"env_kwargs: the run in {out_dir!r} was made with {recorded!r}, "
                             f"got {env_kwargs!r} (a resumed run keeps its environment)")
        return recorded
    if env_kwargs is not None:
        return env_kwargs
    if isinstance(config, _cfg.RunConfig):
        return dict(config.env_kwargs)
    if isinstance(config, dict) and "env_kwargs" in config:
        return _cfg.from_dict({"env_kwargs": config["env_kwargs"]}).env_kwargs
    return {}


def _warn_unused(env, cfg, module):
    """Warn about each setting given for this run (differing from the environment's defaults)
    that ``module`` does not read (its ``USES``)."""
    import logging

    from fastmbrl import config as _cfg

    uses = getattr(module, "USES", None)
    if uses is None:
        return
    base = _cfg.RunConfig(env=env.env_id)
    if env.spec is not None:
        base = _cfg.from_dict(env.spec.defaults, base=base)
    given, default = _cfg.to_dict(cfg), _cfg.to_dict(base)
    unused = [f"{section}.{key}" for section, values in given.items() if isinstance(values, dict)
              and section != "env_kwargs" for key, value in values.items()
              if value != default[section][key] and f"{section}.{key}" != "algorithm.name"
              and not f"{section}.{key}".startswith(uses)]
    if unused:
        logging.getLogger("fastmbrl.run").warning(
            "%s does not use %s: %s no effect on this run", cfg.algorithm.name,
            ", ".join(unused), "it has" if len(unused) == 1 else "they have")


def _resolve_config(env, config, saved, overrides):
    from fastmbrl import config as _cfg

    base = _cfg.RunConfig(env=env.env_id)
    if saved is not None:
        resolved = _cfg.from_dict({k: v for k, v in saved.items() if k != "env"}, base=base)
    else:
        if env.spec is not None:
            base = _cfg.from_dict(env.spec.defaults, base=base)
        if config is None:
            resolved = base
        elif isinstance(config, _cfg.RunConfig):
            resolved = _cfg.from_dict({}, base=dataclasses.replace(config, env=env.env_id))
        elif isinstance(config, dict):
            resolved = _cfg.from_dict({k: v for k, v in config.items() if k != "env"}, base=base)
        else:
            raise TypeError(f"config: expected a RunConfig or a dict, got "
                            f"{type(config).__name__}")
    return _cfg.from_dict(overrides, base=resolved) if overrides else resolved


def run(env="Pendulum-v1", algorithm=None, episodes=None, steps=None, seed=None, config=None, *,
        reward_fn=None, termination_fn=None, angle_dims=None, callbacks=(), out_dir=None,
        resume=False, env_kwargs=None):
    """Train with a model-based (or baseline) RL algorithm and return what happened.

    Parameters
    ----------
    env : str or gymnasium.Env
        A fastmbrl spec id (``fastmbrl.envs.list_specs()``), any gymnasium id (then pass
        ``reward_fn``), or an environment object (then pass ``reward_fn``). Observations and
        actions must be 1-D Boxes with finite action bounds.
    algorithm : str, optional
        One of ``fastmbrl.algorithms.available()`` ("pets": Algorithm 1 with MPC; "random": the
        same loop with random actions; "sac": soft actor-critic; "mbpo": MBPO, SAC on model
        rollouts). Default: ``config``'s ``algorithm.name`` ("pets"), or on resume the run's own.
    episodes : int, optional
        Budget of an episode-based algorithm (overrides ``config.algorithm.episodes``). On resume, a
        larger value extends the run.
    steps : int, optional
        Budget of a step-based algorithm (sac, mbpo), in environment steps
        (``config.algorithm.steps``; default ``sac.total_steps`` / ``mbpo.total_steps``); pets
        refuses it.
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
        Watchers (``fastmbrl.algorithms._common.Callback``); a callable gets each EpisodeRecord;
        returning True stops the run early.
    out_dir : str or os.PathLike, optional
        Folder for config.json, results.csv/json, learning_curve.png and checkpoints.
    resume : bool
        Continue the run checkpointed in ``out_dir`` (its config.json wins over ``config``).
    env_kwargs : dict, optional
        Keywords for the environment's constructor (JSON values; default: ``config``'s
        ``env_kwargs``). Recorded in the run's config.json; a resume takes the run's own, and
        refuses different ones.

    Returns
    -------
    RunResult
        ``steps``, ``returns``, ``wall_times`` per record, plus the records, model, agent, buffer.

    Raises
    ------
    ValueError, TypeError, KeyError
        On bad arguments or impossible settings, naming them, before anything is written to
        ``out_dir`` (unknown env ids raise ``fastmbrl.envs.UnknownEnvError``, a KeyError).

    Notes
    -----
    An environment with no time limit and no ``algorithm.max_episode_steps`` gets episodes of at
    most ``fastmbrl._config.DEFAULT_MAX_EPISODE_STEPS`` (1000) steps, with a logged warning.
    Reproducibility: every random stream derives from ``seed``; a resumed run collects exactly
    the transitions of an uninterrupted one (up to BLAS determinism).
    """
    from fastmbrl import envs
    from fastmbrl._config import DEFAULT_MAX_EPISODE_STEPS
    from fastmbrl.algorithms import _memory
    from fastmbrl.algorithms._callbacks import as_callback
    from fastmbrl.algorithms._checkpoints import check_resume_settings
    from fastmbrl.algorithms._context import RunContext, episode_limits, prepare_output

    t_start = time.perf_counter()
    cbs = [as_callback(cb) for cb in (callbacks or ())]
    if resume and out_dir is None:
        raise ValueError("resume: needs out_dir, the folder of the run to continue")
    if algorithm is not None:
        get(algorithm)                      # an unknown name fails here, listing the known ones
    out_dir = None if out_dir is None else os.fspath(out_dir)

    # ---- configuration: the saved run's, or defaults < env defaults < config < arguments -------
    saved = read_saved_config(out_dir) if resume else None
    if saved is not None and isinstance(env, str) and isinstance(saved.get("env"), str):
        env = saved["env"]
    env_kwargs = _env_kwargs(env_kwargs, config, saved, out_dir)
    resolved_env = envs.resolve(env, reward_fn, termination_fn, angle_dims, env_kwargs)
    overrides = {"env_kwargs": env_kwargs} if saved is None else {}
    if episodes is not None or steps is not None or algorithm is not None:
        overrides["algorithm"] = {k: v for k, v in (("episodes", episodes), ("steps", steps),
                                                    ("name", algorithm)) if v is not None}
    if seed is not None and saved is None:
        overrides["seed"] = seed
    if saved is not None and algorithm is not None:
        saved_name = (saved.get("algorithm") or {}).get("name", "pets") if isinstance(
            saved.get("algorithm"), dict) else "pets"
        if saved_name != algorithm:
            raise ValueError(f"algorithm: the run in {out_dir!r} is {saved_name!r}, got "
                             f"{algorithm!r}")
    cfg = _resolve_config(resolved_env, config, saved, overrides)
    module = get(cfg.algorithm.name)
    if module.BUDGET == "steps" and episodes is not None:
        raise ValueError(f"episodes: {cfg.algorithm.name} counts environment steps, not "
                         f"episodes (got episodes={episodes}); use steps=N (--steps N)")
    if saved is None:
        _warn_unused(resolved_env, cfg, module)
    max_steps, step_limit = episode_limits(cfg, resolved_env)
    ctx = RunContext(config=cfg, env=resolved_env, max_episode_steps=max_steps,
                     step_limit=step_limit, callbacks=cbs, out_dir=out_dir, resume=bool(resume),
                     t_start=t_start, env_kwargs=dict(env_kwargs or {}))

    # ---- refuse what would fail, then (and only then) write to the output folder --------------
    preset = getattr(module, "preset", None)
    check_resume_settings(ctx, preset)
    _memory.check(cfg if preset is None else preset(cfg), resolved_env,
                  step_limit or DEFAULT_MAX_EPISODE_STEPS)
    module.check(ctx)
    if out_dir is None:
        return module.run(ctx)
    with run_folder_lock(out_dir):           # one writer per run folder, for the whole run
        prepare_output(out_dir, cfg)
        return module.run(ctx)
