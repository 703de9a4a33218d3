"""Reading a run folder for inference: ``fastmbrl.load`` and what eval and export share.

A run folder (``fastmbrl.run(..., out_dir=...)``, ``fastmbrl run --out``) holds ``config.json``
and ``checkpoint.json``, a pointer to its last complete checkpoint ``checkpoints/epNNNN/`` (see
``fastmbrl._checkpoint``). Inference needs only part of a checkpoint: ``model.npz`` (pets, mbpo,
mve, svg) and ``agent.npz``/``agent.json`` (the SAC agent of sac, mbpo, mve, svg); the replay
buffer is never read. A finished run and one still training (or killed) are read alike: the
pointer always names a complete checkpoint.
"""
import json
import os
from dataclasses import dataclass

import numpy as np

from fastmbrl._io import read_json_object

__all__ = ["RunFolder", "open_run", "load", "load_model", "load_policy", "SAC_FAMILY",
           "MODEL_ALGORITHMS"]

SAC_FAMILY = ("sac", "mbpo", "mve", "svg", "dhmbpo")
"""Algorithms whose agent is a SAC actor-critic (their policy is exported)."""
MODEL_ALGORITHMS = ("pets", "mbpo", "mve", "svg", "dhmbpo")
"""Algorithms whose run checkpoints a dynamics model (exported too)."""
_LOADABLE = SAC_FAMILY + ("pets", "random")


@dataclass(frozen=True)
class RunFolder:
    """What a run folder says about itself (its config.json and checkpoint pointer).

    Attributes
    ----------
    path : str
        The run folder.
    config : dict
        config.json as read.
    algorithm : str
        ``config["algorithm"]["name"]`` (``"pets"`` when absent, the configuration's default).
    env_id : str
        The environment the run trained on.
    env_kwargs : dict
        Its constructor's keywords.
    seed : int
        The run's seed.
    episode : int
        The checkpoint's progress counter (pets: model-based episodes; step-based algorithms:
        evaluations).
    checkpoint : str
        The checkpoint folder ``checkpoints/epNNNN`` the pointer names.
    """

    path: str
    config: dict
    algorithm: str
    env_id: str
    env_kwargs: dict
    seed: int
    episode: int
    checkpoint: str

    @property
    def config_path(self):
        """``path/config.json``."""
        return os.path.join(self.path, "config.json")

    @property
    def has_policy(self):
        """True when the run's agent is a SAC actor (sac, mbpo, mve, svg)."""
        return self.algorithm in SAC_FAMILY

    @property
    def has_model(self):
        """True when the run checkpoints a dynamics model (pets, mbpo, mve, svg)."""
        return self.algorithm in MODEL_ALGORITHMS

    def run_config(self):
        """config.json as a ``fastmbrl.config.RunConfig``.

        Returns
        -------
        RunConfig

        Raises
        ------
        ValueError
            Naming config.json, when a setting is unknown or out of range.
        """
        from fastmbrl import config as _cfg

        try:
            return _cfg.from_dict({k: v for k, v in self.config.items() if k != "env"},
                                  base=_cfg.RunConfig(env=self.env_id))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"load: {self.config_path!r} holds settings fastmbrl cannot use "
                             f"({exc})") from None


def _unprefixed(exc):
    """A checkpoint-module message without its leading "resume: " (the caller adds its own)."""
    return str(exc).removeprefix("resume: ")


def open_run(run_dir, what="load"):
    """Read and check a run folder's config.json and checkpoint pointer.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A folder written by ``fastmbrl.run(..., out_dir=...)`` / ``fastmbrl run --out``.
    what : str
        First word of the error messages (``"load"``, ``"export"``, ``"eval"``).

    Returns
    -------
    RunFolder

    Raises
    ------
    ValueError
        Naming the folder or file: no such folder; no config.json (not a run folder); a
        config.json that is damaged, names no environment or an unknown algorithm; no checkpoint
        yet (no checkpoint.json); a damaged checkpoint pointer or a missing checkpoint folder.
    """
    from fastmbrl import algorithms
    from fastmbrl._checkpoint import POINTER, checkpoint_pointer

    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"run_dir: expected a folder path (str or os.PathLike), got "
                        f"{type(run_dir).__name__}")
    path = os.fspath(run_dir)
    if not os.path.isdir(path):
        raise ValueError(f"{what}: no such folder {path!r} (expected a fastmbrl run folder, "
                         f"made by fastmbrl.run(..., out_dir=...) or 'fastmbrl run --out')")
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(f"{what}: {path!r} is not a fastmbrl run folder (no config.json)")
    config = read_json_object(config_path, what)
    env_id = config.get("env")
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"{what}: {config_path!r} names no environment (expected an \"env\" "
                         f"string, got {env_id!r})")
    section = config.get("algorithm", {})
    if not isinstance(section, dict):
        raise ValueError(f"{what}: {config_path!r} is damaged (expected an \"algorithm\" object, "
                         f"got {section!r})")
    name = section.get("name", "pets")
    known = algorithms.available()
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"{what}: {config_path!r} names the algorithm {name!r}; expected one of "
                         f"{', '.join(known)}")
    if name not in _LOADABLE:
        raise ValueError(f"{what}: runs of the algorithm {name!r} cannot be loaded for inference "
                         f"yet ({config_path!r}); supported: {', '.join(sorted(_LOADABLE))}")
    env_kwargs = config.get("env_kwargs", {})
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"{what}: {config_path!r} is damaged (expected an \"env_kwargs\" object, "
                         f"got {env_kwargs!r})")
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{what}: {config_path!r} is damaged (expected a non-negative integer "
                         f"\"seed\", got {seed!r})")
    if not os.path.isfile(os.path.join(path, POINTER)):
        raise ValueError(f"{what}: {path!r} holds no checkpoint yet (no {POINTER}): the run "
                         f"stopped before its first checkpoint; continue it with 'fastmbrl run "
                         f"--resume {path}'")
    try:
        episode, ckpt = checkpoint_pointer(path)
    except ValueError as exc:
        raise ValueError(f"{what}: {_unprefixed(exc)}") from None
    return RunFolder(path=path, config=config, algorithm=name, env_id=env_id,
                     env_kwargs=dict(env_kwargs), seed=seed, episode=episode, checkpoint=ckpt)


def _damaged(what, path, exc):
    """``what: checkpoint file 'path' is damaged (reason)``; a reader's own "path: 'path' "
    prefix is dropped (the message names the file once)."""
    msg = str(exc).removeprefix(f"path: {path!r} ")
    reason = msg if msg != str(exc) else f"{type(exc).__name__}: {msg}"
    return ValueError(f"{what}: checkpoint file {path!r} is damaged ({reason})")


def load_model(run, what="load"):
    """The checkpointed dynamics model of a run.

    Parameters
    ----------
    run : RunFolder
    what : str
        First word of the error messages.

    Returns
    -------
    fastmbrl.models.GaussianEnsemble

    Raises
    ------
    ValueError
        Naming the run, when it has no model (sac, random); naming model.npz, when it is missing
        or damaged.
    """
    from fastmbrl.models import GaussianEnsemble

    if not run.has_model:
        raise ValueError(f"{what}: the {run.algorithm} run in {run.path!r} has no dynamics model "
                         f"(runs of {', '.join(MODEL_ALGORITHMS)} have one)")
    path = os.path.join(run.checkpoint, "model.npz")
    if not os.path.isfile(path):
        raise ValueError(f"{what}: checkpoint file {path!r} is missing (a {run.algorithm} run "
                         f"checkpoints its model there)")
    try:
        return GaussianEnsemble.load(path)
    except Exception as exc:  # noqa: BLE001 - every reader error becomes one message
        raise _damaged(what, path, exc) from None


def _action_space(run, action_space, what):
    """The run's action bounds: ``action_space`` when given, else its environment's."""
    from fastmbrl.agents.base import action_bounds

    if action_space is not None:
        low, high, dtype = action_bounds(action_space)
        return low, high, dtype
    env = make_env(run, what=what, hint="; to read the action bounds without it, pass "
                                        "action_space= (a Box or a (low, high) pair) to "
                                        "fm.load / export")
    try:
        space = env.action_space
        low, high, dtype = action_bounds(space)
    finally:
        env.close()
    return low, high, dtype


def make_env(run, what="load", hint="", **extra_kwargs):
    """A fresh instance of the run's environment (id and ``env_kwargs`` from config.json).

    Parameters
    ----------
    run : RunFolder
    what : str
        First word of the error messages.
    hint : str
        Appended to the error message.
    **extra_kwargs
        More constructor keywords (e.g. ``render_mode="rgb_array"``).

    Returns
    -------
    gymnasium.Env

    Raises
    ------
    ImportError
        When the environment needs an optional extra that is not installed.
    ValueError
        Naming the environment id and config.json, when it cannot be built.
    """
    import gymnasium as gym

    from fastmbrl import envs

    kwargs = {**run.env_kwargs, **extra_kwargs}
    try:
        spec = envs.get_spec(run.env_id)
    except envs.UnknownEnvError:
        spec = None
    try:
        if spec is not None:
            if not spec.available:
                envs.make(spec.id)      # the ImportError naming the missing extra
            return spec.factory(**kwargs)
        return gym.make(run.env_id, **kwargs)
    except ImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - gymnasium raises many kinds
        raise ValueError(f"{what}: cannot build the run's environment {run.env_id!r} with "
                         f"env_kwargs {kwargs!r} (from {run.config_path!r}): "
                         f"{type(exc).__name__}: {exc}{hint}") from None


def _agent_state(run, what):
    """The agent's ``state_dict()`` stored in the run's checkpoint (agent.json + agent.npz)."""
    from fastmbrl._checkpoint import load_agent_state

    meta = os.path.join(run.checkpoint, "agent.json")
    path = os.path.join(run.checkpoint, "agent.npz")
    for name in (meta, path):
        if not os.path.isfile(name):
            raise ValueError(f"{what}: checkpoint file {name!r} is missing (a {run.algorithm} "
                             f"run checkpoints its agent in agent.json and agent.npz)")
    try:
        with open(meta, encoding="utf-8") as fh:
            json.load(fh)
    except (OSError, ValueError) as exc:
        raise _damaged(what, meta, exc) from None
    try:
        return load_agent_state(run.checkpoint)
    except Exception as exc:  # noqa: BLE001 - every reader error becomes one message
        raise _damaged(what, meta if meta in str(exc) else path, exc) from None


def load_policy(run, action_space=None, what="load"):
    """The checkpointed SAC agent of a sac, mbpo, mve or svg run.

    Parameters
    ----------
    run : RunFolder
    action_space : gymnasium Box or (low, high) pair, optional
        The action bounds; default: those of the run's environment (built once to read them).
    what : str
        First word of the error messages.

    Returns
    -------
    fastmbrl.agents.SAC
        Restored bit-exactly; ``act(obs, deterministic=True)`` is the policy evaluations use.

    Raises
    ------
    ValueError
        Naming the run, when its agent is not a SAC; naming agent.json / agent.npz, when missing
        or damaged.
    """
    from fastmbrl.agents import SAC

    if not run.has_policy:
        raise ValueError(f"{what}: the {run.algorithm} run in {run.path!r} has no policy network "
                         f"(runs of {', '.join(SAC_FAMILY)} have one)")
    state = _agent_state(run, what)
    meta = os.path.join(run.checkpoint, "agent.json")
    low, high, _ = _action_space(run, action_space, what)
    try:
        config = dict(state["config"])
        obs_dim, act_dim = config.pop("obs_dim"), config.pop("act_dim")
        config["hidden"] = tuple(config["hidden"])
        config["log_std_bounds"] = tuple(config["log_std_bounds"])
        config["dtype"] = np.dtype(config["dtype"]).type
        config["n_threads"] = 1
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(what, meta, exc) from None
    try:
        agent = SAC(obs_dim, act_dim, (low, high), **config)
    except ValueError as exc:
        if "action_space" in str(exc):
            raise ValueError(f"{what}: the agent in {meta!r} acts in {act_dim} dims, the action "
                             f"bounds have {low.shape[0]} ({exc})") from None
        raise _damaged(what, meta, exc) from None
    except TypeError as exc:
        raise _damaged(what, meta, exc) from None
    try:
        agent.load_state_dict(state)
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(what, os.path.join(run.checkpoint, "agent.npz"), exc) from None
    return agent


def load(run_dir, *, reward_fn=None, termination_fn=None, action_space=None, seed=None):
    """The trained agent of a run folder, ready for ``act(obs)``.

    Reads only what inference needs from the run's last checkpoint (never the replay buffer),
    in any process: a finished run, or one still training or killed (its last checkpoint).

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run's output folder (``fastmbrl.run(..., out_dir=...)``, ``fastmbrl run --out``).
    reward_fn, termination_fn : callable, optional
        pets only: ``f(obs (N, D_obs), act (N, D_act), next_obs (N, D_obs))`` -> (N,) float /
        bool, the functions the planner scores with. Default: the environment spec's (what the
        run used unless it was given its own functions). Required for a pets run on an
        environment without a fastmbrl spec.
    action_space : gymnasium Box or (low, high) pair, optional
        The action bounds (D_act,); default: read from the run's environment, built once from
        its id and ``env_kwargs`` in config.json. Pass it for an environment that cannot be
        built by id in this process (a custom class, an unregistered id).
    seed : int, optional
        pets and random: seeds the planner (or the random actions); default: derived from the
        run's seed and checkpoint, so ``load`` is deterministic.

    Returns
    -------
    agent : fastmbrl.agents.Agent
        sac, mbpo, mve, svg: the checkpointed ``fastmbrl.agents.SAC`` (``act(obs,
        deterministic=True)`` is the policy evaluations use; ``act(obs)`` samples).
        pets: a ``fastmbrl.agents.PETS`` planning with the checkpointed model and the run's
        planner settings (the planner of the next episode the run would have played: its
        optimism bonus follows the run's schedule); call ``reset()`` at each episode start and
        ``close()`` when done. random: a ``fastmbrl.agents.RandomAgent``.

    Raises
    ------
    ValueError
        Naming the folder or file: not a run folder (no config.json), no checkpoint yet, a
        damaged config.json or checkpoint file (named), an unknown algorithm; for pets on an
        environment without a spec and no ``reward_fn``, saying to pass ``reward_fn=`` /
        ``termination_fn=``.
    TypeError
        When ``run_dir`` is not a path, or a function is not callable.
    ImportError
        When the run's environment needs an optional extra that is not installed.

    Examples
    --------
    >>> import fastmbrl as fm
    >>> agent = fm.load("runs/pendulum-mbpo")                     # doctest: +SKIP
    >>> action = agent.act(obs, deterministic=True)               # doctest: +SKIP
    """
    run = open_run(run_dir, "load")
    for name, fn in (("reward_fn", reward_fn), ("termination_fn", termination_fn)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name}: expected a callable f(obs, act, next_obs), got "
                            f"{type(fn).__name__}")
    if run.has_policy:
        return load_policy(run, action_space, "load")
    from fastmbrl._validate import check_seed
    from fastmbrl.algorithms._common import STREAM_PLANNER, derive_seed

    if seed is not None:
        seed = check_seed("seed", seed)
    else:
        seed = derive_seed(run.seed, STREAM_PLANNER, run.episode + 1)
    if run.algorithm == "random":
        from fastmbrl.agents import RandomAgent

        low, high, _ = _action_space(run, action_space, "load")
        return RandomAgent((low, high), seed)
    reward_fn, termination_fn = _planning_functions(run, reward_fn, termination_fn)
    low, high, _ = _action_space(run, action_space, "load")
    return _load_pets(run, (low, high), reward_fn, termination_fn, seed)


def _planning_functions(run, reward_fn, termination_fn):
    """The reward and termination functions a pets agent plans with: the arguments, else the
    environment spec's."""
    from fastmbrl import envs

    if reward_fn is None:
        try:
            spec = envs.get_spec(run.env_id)
        except envs.UnknownEnvError:
            raise ValueError(
                f"load: the pets run in {run.path!r} trained on {run.env_id!r}, which has no "
                f"fastmbrl spec, so its reward function cannot be found; pass reward_fn= (and "
                f"termination_fn=, if episodes can end early) to fm.load") from None
        reward_fn = spec.reward_fn
        if termination_fn is None:
            termination_fn = spec.planning_termination_fn or spec.termination_fn
    return reward_fn, termination_fn


def _load_pets(run, bounds, reward_fn, termination_fn, seed):
    from fastmbrl.algorithms import pets

    cfg = run.run_config()
    model = load_model(run, "load")
    if model.act_dim != bounds[0].shape[0]:
        raise ValueError(f"load: the model in {run.checkpoint!r} takes {model.act_dim} action "
                         f"dims, the action bounds have {bounds[0].shape[0]}")
    try:
        return pets.make_agent(model, bounds, reward_fn, termination_fn, cfg, seed,
                               episode=run.episode + 1)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"load: the pets agent of {run.path!r} cannot be built ({exc})") from None
