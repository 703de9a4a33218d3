"""Helpers shared by the reward functions and their gradients (``fastmbrl.envs.reward_fns``)."""
import numpy as np
from numba import njit


@njit(cache=True)
def _action_sq_norm(act, i):
    """``sum_j act[i, j]^2``, accumulated in float64 in column order (the control cost)."""
    ctrl = 0.0
    for j in range(act.shape[1]):
        ctrl += act[i, j] * act[i, j]
    return ctrl


@njit(cache=True)
def _zero_grads(obs, act, next_obs):
    """Zero ``(d_obs, d_act, d_next_obs)`` of the inputs' shapes, in the dtype of ``obs``."""
    n = obs.shape[0]
    return (np.zeros((n, obs.shape[1]), dtype=obs.dtype),
            np.zeros((n, act.shape[1]), dtype=obs.dtype),
            np.zeros((n, next_obs.shape[1]), dtype=obs.dtype))


@njit(cache=True)
def _action_sq_norm_grad(act, weight, d_act):
    """``d_act`` (N, D_act) = the gradient of ``-weight * sum_j a_j^2``, ``-2 weight a``."""
    scale = -2.0 * weight
    for i in range(act.shape[0]):
        for j in range(act.shape[1]):
            d_act[i, j] = scale * act[i, j]
