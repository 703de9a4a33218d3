"""Environments: specs with exact reward and termination functions, wrappers, CartPole continuous.

>>> import fastmbrl as fm
>>> made = fm.envs.make("Pendulum-v1")           # doctest: +SKIP
>>> made.env, made.reward_fn, made.termination_fn, made.angle_dims   # doctest: +SKIP

``resolve`` turns what a user hands to ``fastmbrl.run`` (a spec id, any gymnasium id with a
``reward_fn``, or a ``gymnasium.Env`` object with a ``reward_fn``) into a :class:`ResolvedEnv`.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import gymnasium as gym
import numpy as np

from fastmbrl.envs import reward_fns, termination_fns
from fastmbrl.envs.cartpole import CartPoleContinuousEnv
from fastmbrl.envs.specs import ALIASES, CARTPOLE_ID, SPECS, EnvSpec
from fastmbrl.envs.wrappers import StepCostObservation, XDisplacementObservation

__all__ = ["make", "resolve", "probe_bounds", "list_specs", "get_spec", "EnvSpec", "MadeEnv", "ResolvedEnv",
           "UnknownEnvError",
           "CartPoleContinuousEnv", "XDisplacementObservation", "StepCostObservation",
           "reward_fns", "termination_fns"]

if CARTPOLE_ID not in gym.registry:
    gym.register(id=CARTPOLE_ID, entry_point="fastmbrl.envs.cartpole:CartPoleContinuousEnv",
                 max_episode_steps=200)


class UnknownEnvError(KeyError):
    """An environment id that fastmbrl has no spec for."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


@dataclass
class MadeEnv:
    """A built environment with everything planning needs.

    Attributes
    ----------
    env : gymnasium.Env
    spec : EnvSpec
    reward_fn, termination_fn : callables (see EnvSpec)
    angle_dims : tuple of int
    obs_dim, act_dim : int
    """

    env: gym.Env
    spec: EnvSpec
    reward_fn: Callable
    termination_fn: Callable
    angle_dims: tuple
    obs_dim: int
    act_dim: int


def list_specs(available_only=False):
    """Return the known EnvSpecs in a stable order.

    Parameters
    ----------
    available_only : bool
        Leave out specs whose optional dependency (e.g. mujoco) is not installed.
    """
    return [s for s in SPECS.values() if s.available or not available_only]


def get_spec(env_id):
    """Return the EnvSpec of ``env_id`` (also accepts ``fastmbrl/CartPoleContinuous-v0``).

    Raises
    ------
    UnknownEnvError
        Naming the id and listing the known ones.
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env_id: expected a string, got {type(env_id).__name__}")
    key = ALIASES.get(env_id, env_id)
    if key not in SPECS:
        raise UnknownEnvError(f"env_id: unknown environment {env_id!r}; known: "
                              f"{', '.join(SPECS)} (any other gymnasium id works in fastmbrl.run "
                              "when you pass reward_fn=)")
    return SPECS[key]


def make(env_id, **env_kwargs):
    """Build a known environment and return it with its reward/termination functions.

    Parameters
    ----------
    env_id : str
        A spec id from ``list_specs()``, e.g. 'Pendulum-v1' or 'CartPoleContinuous-v0'.
    **env_kwargs
        Passed to the environment's constructor (``gymnasium.make`` keywords).

    Returns
    -------
    MadeEnv

    Raises
    ------
    UnknownEnvError
        For an id without a spec.
    ImportError
        When the spec needs an optional extra that is not installed.
    TypeError, ValueError
        For the MuJoCo locomotion specs: a keyword the environment does not accept, or one that
        would change what the exact reward/termination functions read (a reward weight or range,
        the frame skip, the observation layout) set to another value than theirs.
    """
    spec = get_spec(env_id)
    if not spec.available:
        raise ImportError(f"env_id: {spec.id} needs the optional '{spec.requires}' dependency; "
                          f"install it with pip install \"fastmbrl[{spec.requires}]\"")
    env = spec.factory(**env_kwargs)
    obs_dim = int(env.observation_space.shape[0])
    act_dim = int(env.action_space.shape[0])
    return MadeEnv(env=env, spec=spec, reward_fn=spec.reward_fn,
                   termination_fn=spec.termination_fn, angle_dims=tuple(spec.angle_dims),
                   obs_dim=obs_dim, act_dim=act_dim)


def probe_bounds(name, fn, obs_dim, act_dim):
    """Call a compiled (Numba) user function once with bounds checks on, to catch a read past
    the end of its arrays (compiled code without checks would read garbage memory instead).

    Parameters
    ----------
    name : str
        The argument's name, for the message ("reward_fn").
    fn : callable or None
        ``fn(obs (2, D_obs), act (2, D_act), next_obs (2, D_obs))``; anything but a Numba
        dispatcher is left alone (plain Python raises IndexError by itself).
    obs_dim, act_dim : int

    Raises
    ------
    ValueError
        Naming ``name`` and the shapes, when the probe call indexes out of bounds.
    """
    py_func = getattr(fn, "py_func", None)
    options = getattr(fn, "targetoptions", None)
    if py_func is None or options is None:
        return
    import numba

    options = {k: v for k, v in options.items() if k != "nopython"}    # njit implies it
    checked = numba.njit(**{**options, "boundscheck": True, "cache": False})(py_func)
    rng = np.random.default_rng(0)
    obs, next_obs = rng.uniform(-1.0, 1.0, (2, 2, obs_dim))
    act = rng.uniform(-1.0, 1.0, (2, act_dim))
    try:
        checked(obs, act, next_obs)
    except IndexError as exc:
        raise ValueError(f"{name}: {getattr(fn, '__name__', fn)!r} reads outside its arrays on a "
                         f"probe call with obs {obs.shape}, act {act.shape}, next_obs "
                         f"{next_obs.shape} ({exc}); check the columns it indexes") from None


@dataclass
class ResolvedEnv:
    """An environment ready for a training loop (what :func:`resolve` returns).

    Attributes
    ----------
    env : gymnasium.Env
    env_id : str
        The spec id, the gymnasium id, or the object's class name.
    reward_fn, termination_fn : callables or None
        ``f(obs (N, D_obs), act (N, D_act), next_obs (N, D_obs))`` -> (N,) float / bool.
    angle_dims : tuple of int
    spec : EnvSpec or None
        Set when ``env_id`` is a fastmbrl spec.
    obs_dim, act_dim : int
    time_limit : int or None
        The environment's own episode limit (``env.spec.max_episode_steps``), None when it has none.
    """

    env: gym.Env
    env_id: str
    reward_fn: Optional[Callable]
    termination_fn: Optional[Callable]
    angle_dims: tuple
    spec: Optional[EnvSpec]
    obs_dim: int
    act_dim: int
    time_limit: Optional[int]


def resolve(env, reward_fn=None, termination_fn=None, angle_dims=None, env_kwargs=None):
    """Build (or take) an environment and the functions a model-based loop plans with.

    Parameters
    ----------
    env : str or gymnasium.Env
        A spec id (``list_specs()``), any gymnasium id (then ``reward_fn`` is required), or an
        environment object (then ``reward_fn`` is required). Observations and actions must be 1-D
        Boxes, the action bounds finite.
    reward_fn, termination_fn : callable, optional
        Override the spec's functions (default: the spec's exact ones; for a spec whose planning
        termination differs from the true one, the planning one).
    angle_dims : sequence of int, optional
        Observation dims that are angles (default: the spec's, else none).
    env_kwargs : dict, optional
        Keywords for the environment's constructor (ids only).

    Returns
    -------
    ResolvedEnv

    Raises
    ------
    UnknownEnvError
        An id that is no spec, given without ``reward_fn``.
    ValueError, TypeError
        Naming ``env`` or ``reward_fn``.
    """
    spec = None
    if isinstance(env, str):
        try:
            spec = get_spec(env)
        except UnknownEnvError:
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
                make(spec.id)  # raises the ImportError naming the missing extra
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
    obs_dim = int(env_obj.observation_space.shape[0])
    act_dim = int(env_obj.action_space.shape[0])
    for name, fn in (("reward_fn", reward_fn), ("termination_fn", termination_fn)):
        if spec is None or fn not in (spec.reward_fn, spec.termination_fn,
                                      spec.planning_termination_fn):
            probe_bounds(name, fn, obs_dim, act_dim)
    time_limit = getattr(getattr(env_obj, "spec", None), "max_episode_steps", None)
    return ResolvedEnv(env=env_obj, env_id=env_id, reward_fn=reward_fn,
                       termination_fn=termination_fn, angle_dims=tuple(angle_dims or ()),
                       spec=spec, obs_dim=int(env_obj.observation_space.shape[0]),
                       act_dim=int(env_obj.action_space.shape[0]), time_limit=time_limit)
