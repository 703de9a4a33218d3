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
# (``mountain_car_at_goal``, ``inverted_pendulum``, the locomotion ``*_is_healthy`` helpers).
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


# ---------------------------------------------------------------- MuJoCo locomotion (v5)
# The "healthy" rule of each robot, for one row of an observation laid out by its fastmbrl spec
# (fastmbrl.envs.specs): the termination is "not healthy", and the rewards use the same helper for
# their healthy bonus (v5 pays ``healthy_reward * is_healthy`` after the step). Comparisons are
# written ``lo < v < hi`` (or ``<=``) exactly as gymnasium writes them, so a NaN is unhealthy too.


@njit(cache=True)
def hopper_is_healthy(next_obs, i):
    """Hopper-v5's ``is_healthy`` for row ``i`` of an observation (N, 12) (bool).

    Columns: 0 x displacement, 1 z, 2 torso angle, 2:6 qpos[2:], 6:12 qvel clipped to [-10, 10].
    Healthy: every column 2:12 strictly inside (-100, 100), 0.7 < z < inf and -0.2 < angle < 0.2.
    The environment tests the unclipped qvel against (-100, 100); the clip hides |qvel| >= 100,
    which only happens when the simulation blows up.
    """
    z = next_obs[i, 1]
    angle = next_obs[i, 2]
    healthy = 0.7 < z < np.inf and -0.2 < angle < 0.2
    for j in range(2, next_obs.shape[1]):
        v = next_obs[i, j]
        if not -100.0 < v < 100.0:
            healthy = False
    return healthy


@njit(cache=True)
def hopper(obs, act, next_obs):
    """Hopper-v5 (fastmbrl's layout): the hopper is no longer healthy after the step.

    Parameters
    ----------
    obs : float array of shape (N, 12), unused
    act : float array of shape (N, 3), unused
    next_obs : float array of shape (N, 12)
        (x displacement, z, angle, 3 joint angles, 6 velocities clipped to [-10, 10]) after the
        step.

    Returns
    -------
    done : bool array (N,)

    Notes
    -----
    ``done = not (0.7 < z < inf and -0.2 < angle < 0.2 and -100 < s < 100 for every s in
    qpos[2:], qvel)``, all intervals open, as gymnasium's ``is_healthy``. The observed velocities
    are clipped to [-10, 10], so |qvel| >= 100 (a blown-up simulation) is not seen here: the
    environment terminates there and this function does not.
    """
    n = next_obs.shape[0]
    out = np.empty(n, dtype=np.bool_)
    for i in range(n):
        out[i] = not hopper_is_healthy(next_obs, i)
    return out


@njit(cache=True)
def walker2d_is_healthy(next_obs, i):
    """Walker2d-v5's ``is_healthy`` for row ``i`` of an observation (N, 18) (bool).

    Columns: 0 x displacement, 1 z, 2 torso angle. Healthy: 0.8 < z < 2.0 and -1 < angle < 1.
    """
    z = next_obs[i, 1]
    angle = next_obs[i, 2]
    return 0.8 < z < 2.0 and -1.0 < angle < 1.0


@njit(cache=True)
def walker2d(obs, act, next_obs):
    """Walker2d-v5 (fastmbrl's layout): the walker is no longer healthy after the step.

    Parameters
    ----------
    obs : float array of shape (N, 18), unused
    act : float array of shape (N, 6), unused
    next_obs : float array of shape (N, 18)
        (x displacement, z, angle, 6 joint angles, 9 velocities clipped to [-10, 10]) after the
        step.

    Returns
    -------
    done : bool array (N,)

    Notes
    -----
    ``done = not (0.8 < z < 2.0 and -1 < angle < 1)``, open intervals, z = qpos[1] and
    angle = qpos[2] (columns 1 and 2).
    """
    n = next_obs.shape[0]
    out = np.empty(n, dtype=np.bool_)
    for i in range(n):
        out[i] = not walker2d_is_healthy(next_obs, i)
    return out


@njit(cache=True)
def ant_is_healthy(next_obs, i):
    """Ant-v5's ``is_healthy`` for row ``i`` of an observation (N, 29) (bool).

    Columns: 0 x displacement, 1 contact cost, 2 z = qpos[2], 2:15 qpos[2:], 15:29 qvel.
    Healthy: every column finite and 0.2 <= z <= 1.0 (closed interval).
    """
    z = next_obs[i, 2]
    healthy = 0.2 <= z <= 1.0
    for j in range(next_obs.shape[1]):
        if not np.isfinite(next_obs[i, j]):
            healthy = False
    return healthy


@njit(cache=True)
def ant(obs, act, next_obs):
    """Ant-v5 (fastmbrl's layout): the ant is no longer healthy after the step.

    Parameters
    ----------
    obs : float array of shape (N, 29), unused
    act : float array of shape (N, 8), unused
    next_obs : float array of shape (N, 29)
        (x displacement, contact cost, qpos[2:] (13), qvel (14)) after the step.

    Returns
    -------
    done : bool array (N,)

    Notes
    -----
    ``done = not (state finite and 0.2 <= z <= 1.0)`` with z = qpos[2] (column 2), a CLOSED
    interval as in gymnasium. The environment tests the finiteness of the whole state (qpos,
    qvel); qpos[0:2] are not observed, so this tests every observed column instead (the two
    prepended ones derive from the state). MuJoCo itself resets a simulation whose state turns
    non-finite, so the difference does not arise on real transitions.
    """
    n = next_obs.shape[0]
    out = np.empty(n, dtype=np.bool_)
    for i in range(n):
        out[i] = not ant_is_healthy(next_obs, i)
    return out


@njit(cache=True)
def humanoid_is_healthy(next_obs, i):
    """Humanoid-v5's ``is_healthy`` for row ``i`` of an observation (N, 47): 1.0 < z < 2.0.

    Columns: 0 x displacement of the centre of mass, 1 contact cost, 2 z = qpos[2].
    """
    z = next_obs[i, 2]
    return 1.0 < z < 2.0


@njit(cache=True)
def humanoid(obs, act, next_obs):
    """Humanoid-v5 (fastmbrl's layout): the humanoid is no longer healthy after the step.

    Parameters
    ----------
    obs : float array of shape (N, 47), unused
    act : float array of shape (N, 17), unused
    next_obs : float array of shape (N, 47)
        (x displacement of the centre of mass, contact cost, qpos[2:] (22), qvel (23)) after the
        step.

    Returns
    -------
    done : bool array (N,)

    Notes
    -----
    ``done = not (1.0 < z < 2.0)``, open interval, z = qpos[2] (column 2).
    """
    n = next_obs.shape[0]
    out = np.empty(n, dtype=np.bool_)
    for i in range(n):
        out[i] = not humanoid_is_healthy(next_obs, i)
    return out
