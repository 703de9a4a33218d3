"""Exact reward functions of the environments fastmbrl knows, as Numba kernels.

Design: every function has the signature ``reward_fn(obs, act, next_obs) -> reward`` with obs and
next_obs float arrays of shape (N, D_obs), act of shape (N, D_act), and returns a 1-D array (N,) of
the inputs' dtype. They are module-level ``@njit(cache=True)`` functions so the compiled planning
rollout can call them on every row at full speed; called from Python on NumPy arrays they work the
same way (Numba compiles one specialisation per dtype/layout). Each one loops over rows, computes
in the input precision, and reproduces the environment's own reward on real transitions (tested to
1e-5 with float64 inputs; see tests/envs/test_reward_fns.py).
"""
import numpy as np
from numba import njit


@njit(cache=True)
def pendulum(obs, act, next_obs):
    """Reward of gymnasium's Pendulum-v1.

    Parameters
    ----------
    obs : float array of shape (N, 3)
        (cos theta, sin theta, theta_dot) before the step.
    act : float array of shape (N, 1)
        Torque; clipped to [-2, 2] as the environment does.
    next_obs : float array of shape (N, 3)
        Unused; present for the common signature.

    Returns
    -------
    reward : array of shape (N,), dtype of ``obs``

    Notes
    -----
    ``r = -(angle_normalize(theta)^2 + 0.1 theta_dot^2 + 0.001 u^2)`` with theta the angle BEFORE the
    step and u the clipped torque. ``arctan2(sin, cos)`` already lies in [-pi, pi], which is what
    ``angle_normalize`` returns (up to the sign at exactly pi, which the square removes).
    """
    n = obs.shape[0]
    out = np.empty(n, dtype=obs.dtype)
    for i in range(n):
        th = np.arctan2(obs[i, 1], obs[i, 0])
        thdot = obs[i, 2]
        u = min(max(act[i, 0], -2.0), 2.0)
        out[i] = -(th * th + 0.1 * thdot * thdot + 0.001 * u * u)
    return out


@njit(cache=True)
def mountain_car_continuous(obs, act, next_obs):
    """Reward of gymnasium's MountainCarContinuous-v0.

    Parameters
    ----------
    obs : float array of shape (N, 2)
        Unused (position, velocity) before the step.
    act : float array of shape (N, 1)
        Force as given to ``step`` (the environment's penalty uses the unclipped action).
    next_obs : float array of shape (N, 2)
        (position, velocity) after the step.

    Returns
    -------
    reward : array of shape (N,), dtype of ``obs``

    Notes
    -----
    ``r = 100 [position' >= 0.45 and velocity' >= 0] - 0.1 a^2``.
    """
    n = obs.shape[0]
    out = np.empty(n, dtype=obs.dtype)
    for i in range(n):
        r = -0.1 * act[i, 0] * act[i, 0]
        if next_obs[i, 0] >= 0.45 and next_obs[i, 1] >= 0.0:
            r += 100.0
        out[i] = r
    return out


@njit(cache=True)
def constant_one(obs, act, next_obs):
    """Reward 1 for every transition (CartPole continuous, InvertedPendulum's alive bonus).

    Parameters
    ----------
    obs : float array of shape (N, D_obs)
    act : float array of shape (N, D_act)
    next_obs : float array of shape (N, D_obs)

    Returns
    -------
    reward : array of shape (N,), dtype of ``obs``, all ones

    Notes
    -----
    The planning rollout stops crediting reward after a predicted termination, so a constant
    reward still ranks action sequences by how long they keep the system alive.
    """
    return np.ones(obs.shape[0], dtype=obs.dtype)


@njit(cache=True)
def inverted_pendulum(obs, act, next_obs):
    """Reward of gymnasium's InvertedPendulum-v5: 1 unless the step terminates, then 0.

    Parameters
    ----------
    obs : float array of shape (N, 4)
    act : float array of shape (N, 1)
    next_obs : float array of shape (N, 4)
        (cart position, pole angle, cart velocity, pole angular velocity) after the step.

    Returns
    -------
    reward : array of shape (N,), dtype of ``obs``
    """
    n = obs.shape[0]
    out = np.empty(n, dtype=obs.dtype)
    for i in range(n):
        alive = abs(next_obs[i, 1]) <= 0.2
        for j in range(next_obs.shape[1]):
            if not np.isfinite(next_obs[i, j]):
                alive = False
        out[i] = 1.0 if alive else 0.0
    return out


@njit(cache=True)
def reacher(obs, act, next_obs):
    """Reward of gymnasium's Reacher-v5.

    Parameters
    ----------
    obs : float array of shape (N, 10)
    act : float array of shape (N, 2)
    next_obs : float array of shape (N, 10)
        Its last two columns are the fingertip-minus-target vector after the step.

    Returns
    -------
    reward : array of shape (N,), dtype of ``obs``

    Notes
    -----
    ``r = -||fingertip - target|| - sum(a^2)``; the fingertip and the target lie in one plane, so the
    observation's planar vector gives the full distance.
    """
    n = obs.shape[0]
    out = np.empty(n, dtype=obs.dtype)
    for i in range(n):
        dx = next_obs[i, 8]
        dy = next_obs[i, 9]
        ctrl = 0.0
        for j in range(act.shape[1]):
            ctrl += act[i, j] * act[i, j]
        out[i] = -np.sqrt(dx * dx + dy * dy) - ctrl
    return out


@njit(cache=True)
def half_cheetah(obs, act, next_obs):
    """Reward of gymnasium's HalfCheetah-v5 seen through ``XDisplacementObservation``.

    Parameters
    ----------
    obs : float array of shape (N, 18)
    act : float array of shape (N, 6)
    next_obs : float array of shape (N, 18)
        Column 0 is the x displacement of the torso during the step (the wrapper's observation).

    Returns
    -------
    reward : array of shape (N,), dtype of ``obs``

    Notes
    -----
    ``r = (x_after - x_before) / dt - 0.1 sum(a^2)`` with dt = 0.05 s (frame skip 5 x 0.01 s).
    """
    n = obs.shape[0]
    out = np.empty(n, dtype=obs.dtype)
    for i in range(n):
        ctrl = 0.0
        for j in range(act.shape[1]):
            ctrl += act[i, j] * act[i, j]
        out[i] = next_obs[i, 0] / 0.05 - 0.1 * ctrl
    return out
