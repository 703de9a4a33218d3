"""Exact termination functions of the environments fastmbrl knows, as Numba kernels.

Design: ``termination_fn(obs, act, next_obs) -> done``, float arrays (N, D_obs), (N, D_act),
(N, D_obs) in, a bool array (N,) out, one row per transition; module-level ``@njit(cache=True)`` so
the compiled rollout calls them directly. Each reproduces the environment's ``terminated`` flag
(not truncation, which the time limit decides).
"""
# Hot-path specialisations, written out on purpose: each function below is a separate compiled
# kernel that the planning rollout calls on every particle row, and its body is the environment's
# own formula. They share only the row-loop skeleton and the docstring layout; a generic loop taking
# the rule as an argument would pass a first-class function through Numba (no inlining, and a
# cache key per rule) for no shared logic. Formulas needed by reward_fns too live here once
# (``mountain_car_at_goal``, ``inverted_pendulum``).
import numpy as np
from numba import njit

@njit(cache=True)
def no_termination(obs, act, next_obs):
    """Never terminates (Pendulum-v1, Reacher-v5, HalfCheetah-v5).

    Parameters
    ----------
    obs, act, next_obs : float arrays of shapes (N, D_obs), (N, D_act), (N, D_obs)

    Returns
    -------
    done : bool array (N,), all False
    """
    return np.zeros(obs.shape[0], dtype=np.bool_)


@njit(cache=True)
def mountain_car_at_goal(position, velocity):
    """MountainCarContinuous-v0's goal for one state: position >= 0.45 and velocity >= 0 (bool)."""
    return position >= 0.45 and velocity >= 0.0


@njit(cache=True)
def mountain_car_continuous(obs, act, next_obs):
    """MountainCarContinuous-v0: the car reached the flag (position' >= 0.45, velocity' >= 0).

    Parameters
    ----------
    obs, act, next_obs : float arrays of shapes (N, 2), (N, 1), (N, 2)

    Returns
    -------
    done : bool array (N,)
    """
    n = next_obs.shape[0]
    out = np.empty(n, dtype=np.bool_)
    for i in range(n):
        out[i] = mountain_car_at_goal(next_obs[i, 0], next_obs[i, 1])
    return out


@njit(cache=True)
def cartpole(obs, act, next_obs):
    """Classic cart-pole: |x'| > 2.4 or |theta'| > 12 degrees.

    Parameters
    ----------
    obs, act, next_obs : float arrays of shapes (N, 4), (N, 1), (N, 4); columns (x, x_dot, theta,
        theta_dot)

    Returns
    -------
    done : bool array (N,)
    """
    n = next_obs.shape[0]
    out = np.empty(n, dtype=np.bool_)
    for i in range(n):
        out[i] = abs(next_obs[i, 0]) > 2.4 or abs(next_obs[i, 2]) > 0.20943951023931953  # 12 degrees
    return out


@njit(cache=True)
def inverted_pendulum(obs, act, next_obs):
    """InvertedPendulum-v5: the pole angle left [-0.2, 0.2] rad or the state is not finite.

    Parameters
    ----------
    obs, act, next_obs : float arrays of shapes (N, 4), (N, 1), (N, 4)

    Returns
    -------
    done : bool array (N,)
    """
    n = next_obs.shape[0]
    out = np.empty(n, dtype=np.bool_)
    for i in range(n):
        bad = abs(next_obs[i, 1]) > 0.2
        for j in range(next_obs.shape[1]):
            if not np.isfinite(next_obs[i, j]):
                bad = True
        out[i] = bad
    return out


# The rail of InvertedPendulum-v5 limits the cart to about |x| <= 1 m; hitting it is not a termination
# of the environment, but the Gaussian ensemble cannot learn the dead stop there and predicts that the
# cart rolls on, so plans drift into the rail and the pole is knocked over.
INVERTED_PENDULUM_RAIL_MARGIN = 0.9


@njit(cache=True)
def inverted_pendulum_rail(obs, act, next_obs):
    """Planning-only termination for InvertedPendulum-v5: the exact rule, or the cart beyond 0.9 m.

    Not the environment's rule: the planner uses it (``EnvSpec.planning_termination_fn``) to keep
    plans away from the rail at |x| = 1, which the learned model does not capture; returns are still
    those of the real environment. It equals :func:`inverted_pendulum` wherever |x| <= 0.9.

    Parameters
    ----------
    obs, act, next_obs : float arrays of shapes (N, 4), (N, 1), (N, 4)

    Returns
    -------
    done : bool array (N,)
    """
    out = inverted_pendulum(obs, act, next_obs)
    for i in range(next_obs.shape[0]):
        if abs(next_obs[i, 0]) > INVERTED_PENDULUM_RAIL_MARGIN:
            out[i] = True
    return out
