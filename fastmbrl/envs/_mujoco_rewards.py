"""Rewards of the MuJoCo environments (InvertedPendulum-v5, Reacher-v5, HalfCheetah-v5, Hopper-v5,
Walker2d-v5, Ant-v5, Humanoid-v5) and their gradients, as Numba kernels; see
``fastmbrl.envs.reward_fns``.
"""
# Hot-path specialisations, written out on purpose: each reward below is a separate compiled kernel
# that the planning rollout calls on every particle row, and its body is the environment's own
# formula. They share only the row-loop skeleton and the docstring layout; the terms two rewards
# have in common are helpers (``_action_sq_norm``, and ``termination_fns`` for goal and alive).
import numpy as np
from numba import njit

from fastmbrl.envs import termination_fns
from fastmbrl.envs._classic_rewards import constant_one_grad
from fastmbrl.envs._reward_helpers import _action_sq_norm, _action_sq_norm_grad, _zero_grads


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
    done = termination_fns.inverted_pendulum(obs, act, next_obs)   # one definition of "alive"
    out = np.empty(obs.shape[0], dtype=obs.dtype)
    for i in range(obs.shape[0]):
        out[i] = 0.0 if done[i] else 1.0
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
        out[i] = -np.sqrt(dx * dx + dy * dy) - _action_sq_norm(act, i)
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
        out[i] = next_obs[i, 0] / 0.05 - 0.1 * _action_sq_norm(act, i)
    return out


@njit(cache=True)
def hopper(obs, act, next_obs):
    """Reward of gymnasium's Hopper-v5 in fastmbrl's layout (x displacement in column 0).

    Parameters
    ----------
    obs : float array of shape (N, 12)
    act : float array of shape (N, 3)
        Torques as given to ``step``.
    next_obs : float array of shape (N, 12)
        (x displacement during the step, z, angle, 3 joint angles, 6 clipped velocities).

    Returns
    -------
    reward : array of shape (N,), dtype of ``obs``

    Notes
    -----
    ``r = dx / dt + 1 [healthy'] - 0.001 sum(a^2)`` with dt = 0.008 s (frame skip 4 x 0.002 s)
    and healthy' ``termination_fns.hopper_is_healthy`` of the state after the step (v5 pays the
    healthy reward only while healthy, so a terminating step gets none). The velocity clip of
    the observation hides the environment's |qvel| < 100 condition (see
    ``termination_fns.hopper``).
    """
    n = obs.shape[0]
    out = np.empty(n, dtype=obs.dtype)
    for i in range(n):
        healthy = 1.0 if termination_fns.hopper_is_healthy(next_obs, i) else 0.0
        out[i] = next_obs[i, 0] / 0.008 + healthy - 1e-3 * _action_sq_norm(act, i)
    return out


@njit(cache=True)
def walker2d(obs, act, next_obs):
    """Reward of gymnasium's Walker2d-v5 in fastmbrl's layout (x displacement in column 0).

    Parameters
    ----------
    obs : float array of shape (N, 18)
    act : float array of shape (N, 6)
        Torques as given to ``step``.
    next_obs : float array of shape (N, 18)
        (x displacement during the step, z, angle, 6 joint angles, 9 clipped velocities).

    Returns
    -------
    reward : array of shape (N,), dtype of ``obs``

    Notes
    -----
    ``r = dx / dt + 1 [healthy'] - 0.001 sum(a^2)`` with dt = 0.008 s (frame skip 4 x 0.002 s)
    and healthy' = ``termination_fns.walker2d_is_healthy`` (0.8 < z < 2, -1 < angle < 1) after
    the step.
    """
    n = obs.shape[0]
    out = np.empty(n, dtype=obs.dtype)
    for i in range(n):
        healthy = 1.0 if termination_fns.walker2d_is_healthy(next_obs, i) else 0.0
        out[i] = next_obs[i, 0] / 0.008 + healthy - 1e-3 * _action_sq_norm(act, i)
    return out


@njit(cache=True)
def ant(obs, act, next_obs):
    """Reward of gymnasium's Ant-v5 in fastmbrl's layout (x displacement, contact cost first).

    Parameters
    ----------
    obs : float array of shape (N, 29)
    act : float array of shape (N, 8)
        Torques as given to ``step``.
    next_obs : float array of shape (N, 29)
        (x displacement of the torso's ``xpos`` during the step, the step's contact cost,
        qpos[2:] (13), qvel (14)).

    Returns
    -------
    reward : array of shape (N,), dtype of ``obs``

    Notes
    -----
    ``r = dx / dt + 1 [healthy'] - 0.5 sum(a^2) - contact_cost`` with dt = 0.05 s (frame skip
    5 x 0.01 s), healthy' = ``termination_fns.ant_is_healthy`` after the step and the contact
    cost ``5e-4 sum(clip(cfrc_ext, -1, 1)^2)`` read from column 1 (it depends on the contact
    forces, not on positions and velocities, so it is observed).
    """
    n = obs.shape[0]
    out = np.empty(n, dtype=obs.dtype)
    for i in range(n):
        healthy = 1.0 if termination_fns.ant_is_healthy(next_obs, i) else 0.0
        # the environment's order: (forward + healthy) - (ctrl + contact)
        out[i] = ((next_obs[i, 0] / 0.05 + healthy)
                  - (0.5 * _action_sq_norm(act, i) + next_obs[i, 1]))
    return out


@njit(cache=True)
def humanoid(obs, act, next_obs):
    """Reward of gymnasium's Humanoid-v5 in fastmbrl's layout (x displacement, contact cost first).

    Parameters
    ----------
    obs : float array of shape (N, 47)
    act : float array of shape (N, 17)
        Torques as given to ``step`` (the environment's control cost reads ``data.ctrl``, which
        is the action as given).
    next_obs : float array of shape (N, 47)
        (x displacement of the centre of mass during the step, the step's contact cost,
        qpos[2:] (22), qvel (23)).

    Returns
    -------
    reward : array of shape (N,), dtype of ``obs``

    Notes
    -----
    ``r = 1.25 dx / dt + 5 [healthy'] - 0.1 sum(a^2) - contact_cost`` with dt = 0.015 s (frame
    skip 5 x 0.003 s), healthy' = ``termination_fns.humanoid_is_healthy`` (1 < z < 2) after the
    step and the contact cost ``min(5e-7 sum(cfrc_ext^2), 10)`` read from column 1.
    """
    n = obs.shape[0]
    out = np.empty(n, dtype=obs.dtype)
    for i in range(n):
        healthy = 5.0 if termination_fns.humanoid_is_healthy(next_obs, i) else 0.0
        # the environment's order: (1.25 (dx / dt) + healthy) - (ctrl + contact)
        out[i] = ((1.25 * (next_obs[i, 0] / 0.015) + healthy)
                  - (0.1 * _action_sq_norm(act, i) + next_obs[i, 1]))
    return out


# ---------------------------------------------------------------- reward gradients
# ``reward_grad_fn(obs, act, next_obs) -> (d_obs (N, D_obs), d_act (N, D_act), d_next_obs (N, D_obs))``:
# the gradient of each row's reward with respect to its three inputs, for backpropagation through
# a model step (``fastmbrl.models.ModelEnv.step_vjp``; course notes, section 5.4). Indicator terms
# (a goal bonus, "alive" while not terminated) are piecewise constant: their gradient is 0 almost
# everywhere, and so is theirs here. Arrays of the dtype of ``obs``. Like the rewards, each one is a
# hot-path specialisation written out for its environment; the shared parts are helpers
# (``_zero_grads``, ``_action_sq_norm_grad``).


@njit(cache=True)
def inverted_pendulum_grad(obs, act, next_obs):
    """Gradient of :func:`inverted_pendulum`: zeros ("alive" is piecewise constant).

    Parameters
    ----------
    obs, act, next_obs : float arrays of shapes (N, 4), (N, 1), (N, 4)

    Returns
    -------
    d_obs, d_act, d_next_obs : zero arrays of the inputs' shapes
    """
    return constant_one_grad(obs, act, next_obs)


@njit(cache=True)
def reacher_grad(obs, act, next_obs):
    """Gradient of :func:`reacher`.

    Parameters
    ----------
    obs : float array of shape (N, 10)
    act : float array of shape (N, 2)
    next_obs : float array of shape (N, 10)

    Returns
    -------
    d_obs : array (N, 10), zeros
    d_act : array (N, 2), ``-2 a``
    d_next_obs : array (N, 10), ``-(dx, dy) / ||(dx, dy)||`` in columns 8 and 9 (0 at distance 0)
    """
    d_obs, d_act, d_next = _zero_grads(obs, act, next_obs)
    for i in range(obs.shape[0]):
        dx = np.float64(next_obs[i, 8])
        dy = np.float64(next_obs[i, 9])
        dist = np.sqrt(dx * dx + dy * dy)
        if dist > 0.0:
            d_next[i, 8] = -dx / dist
            d_next[i, 9] = -dy / dist
    _action_sq_norm_grad(act, 1.0, d_act)
    return d_obs, d_act, d_next


@njit(cache=True)
def half_cheetah_grad(obs, act, next_obs):
    """Gradient of :func:`half_cheetah`.

    Parameters
    ----------
    obs : float array of shape (N, 18)
    act : float array of shape (N, 6)
    next_obs : float array of shape (N, 18)

    Returns
    -------
    d_obs : array (N, 18), zeros
    d_act : array (N, 6), ``-0.2 a``
    d_next_obs : array (N, 18), ``1 / dt = 20`` in column 0
    """
    d_obs, d_act, d_next = _zero_grads(obs, act, next_obs)
    for i in range(obs.shape[0]):
        d_next[i, 0] = 1.0 / 0.05
    _action_sq_norm_grad(act, 0.1, d_act)
    return d_obs, d_act, d_next


@njit(cache=True)
def _forward_grad(n, weight_over_dt, d_next):
    """``d_next[:, 0] = weight / dt``: the gradient of the forward reward ``weight dx / dt``."""
    for i in range(n):
        d_next[i, 0] = weight_over_dt


@njit(cache=True)
def hopper_grad(obs, act, next_obs):
    """Gradient of :func:`hopper`.

    Parameters
    ----------
    obs : float array of shape (N, 12)
    act : float array of shape (N, 3)
    next_obs : float array of shape (N, 12)

    Returns
    -------
    d_obs : array (N, 12), zeros
    d_act : array (N, 3), ``-0.002 a``
    d_next_obs : array (N, 12), ``1 / dt = 125`` in column 0, zeros elsewhere (the healthy bonus
        is piecewise constant)
    """
    d_obs, d_act, d_next = _zero_grads(obs, act, next_obs)
    _forward_grad(obs.shape[0], 1.0 / 0.008, d_next)
    _action_sq_norm_grad(act, 1e-3, d_act)
    return d_obs, d_act, d_next


@njit(cache=True)
def walker2d_grad(obs, act, next_obs):
    """Gradient of :func:`walker2d`.

    Parameters
    ----------
    obs : float array of shape (N, 18)
    act : float array of shape (N, 6)
    next_obs : float array of shape (N, 18)

    Returns
    -------
    d_obs : array (N, 18), zeros
    d_act : array (N, 6), ``-0.002 a``
    d_next_obs : array (N, 18), ``1 / dt = 125`` in column 0, zeros elsewhere
    """
    d_obs, d_act, d_next = _zero_grads(obs, act, next_obs)
    _forward_grad(obs.shape[0], 1.0 / 0.008, d_next)
    _action_sq_norm_grad(act, 1e-3, d_act)
    return d_obs, d_act, d_next


@njit(cache=True)
def ant_grad(obs, act, next_obs):
    """Gradient of :func:`ant`.

    Parameters
    ----------
    obs : float array of shape (N, 29)
    act : float array of shape (N, 8)
    next_obs : float array of shape (N, 29)

    Returns
    -------
    d_obs : array (N, 29), zeros
    d_act : array (N, 8), ``-a``
    d_next_obs : array (N, 29), ``1 / dt = 20`` in column 0, -1 in column 1 (the contact cost),
        zeros elsewhere
    """
    d_obs, d_act, d_next = _zero_grads(obs, act, next_obs)
    _forward_grad(obs.shape[0], 1.0 / 0.05, d_next)
    for i in range(obs.shape[0]):
        d_next[i, 1] = -1.0
    _action_sq_norm_grad(act, 0.5, d_act)
    return d_obs, d_act, d_next


@njit(cache=True)
def humanoid_grad(obs, act, next_obs):
    """Gradient of :func:`humanoid`.

    Parameters
    ----------
    obs : float array of shape (N, 47)
    act : float array of shape (N, 17)
    next_obs : float array of shape (N, 47)

    Returns
    -------
    d_obs : array (N, 47), zeros
    d_act : array (N, 17), ``-0.2 a``
    d_next_obs : array (N, 47), ``1.25 / dt = 83.33...`` in column 0, -1 in column 1 (the
        contact cost), zeros elsewhere
    """
    d_obs, d_act, d_next = _zero_grads(obs, act, next_obs)
    _forward_grad(obs.shape[0], 1.25 / 0.015, d_next)
    for i in range(obs.shape[0]):
        d_next[i, 1] = -1.0
    _action_sq_norm_grad(act, 0.1, d_act)
    return d_obs, d_act, d_next
