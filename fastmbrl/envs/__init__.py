"""Environments: specs with exact reward and termination functions, wrappers, CartPole continuous.

>>> import fastmbrl as fm
>>> made = fm.envs.make("Pendulum-v1")           # doctest: +SKIP
>>> made.env, made.reward_fn, made.termination_fn, made.angle_dims   # doctest: +SKIP
"""
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym

from fastmbrl.envs import reward_fns, termination_fns
from fastmbrl.envs.cartpole import CartPoleContinuousEnv
from fastmbrl.envs.specs import ALIASES, CARTPOLE_ID, SPECS, EnvSpec
from fastmbrl.envs.wrappers import XDisplacementObservation

__all__ = ["make", "list_specs", "get_spec", "EnvSpec", "MadeEnv", "UnknownEnvError",
           "CartPoleContinuousEnv", "XDisplacementObservation", "reward_fns", "termination_fns"]

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
