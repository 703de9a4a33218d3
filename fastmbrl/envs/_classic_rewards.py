"""Rewards of gymnasium's classic-control environments (Pendulum-v1, MountainCarContinuous-v0,
CartPole's constant one) and their gradients, as Numba kernels; see ``fastmbrl.envs.reward_fns``.
"""
# Hot-path specialisations, written out on purpose: each reward below is a separate compiled kernel
# that the planning rollout calls on every particle row, and its body is the environment's own
# formula. They share only the row-loop skeleton and the docstring layout; the terms two rewards
# have in common are helpers (``_action_sq_norm``, and ``termination_fns`` for goal and alive).
import numpy as np
from numba import njit

from fastmbrl.envs import termination_fns
from fastmbrl.envs._reward_helpers import _action_sq_norm_grad, _zero_grads

# Minimax-style fit of atan(z) / z as a polynomial in w = z^2 on |z| <= tan(pi/8) (max abs error of
# z * P(z^2) against arctan below 1e-11 there), highest degree first for Horner.
_ATAN_C6 = 0.04712999383922049
_ATAN_C5 = -0.08459113739576996
_ATAN_C4 = 0.11041055870355103
_ATAN_C3 = -0.14281639510570437
_ATAN_C2 = 0.1999988591501187
_ATAN_C1 = -0.33333332128310367
_ATAN_C0 = 0.9999999999791593
_TAN_PI_8 = 0.41421356237309503
_HUGE = 1e307


@njit(cache=True, error_model="numpy")
def atan2_fast(y, x):
    """Branch-free ``arctan2(y, x)`` for one pair of floats, computed in float64.

    Parameters
    ----------
    y, x : float
        Any real values (float32 inputs are widened to float64).

    Returns
    -------
    angle : float64 in [-pi, pi]
        Within 1e-11 of ``np.arctan2(y, x)``, with the same signs of zero and the same branch cut
        (``y = -0.0, x < 0`` gives ``-pi``); NaN in, NaN out.

    Notes
    -----
    A scalar ``np.arctan2`` is a libm call that keeps LLVM from vectorising the loop around it.
    Here only selects, one division and a polynomial remain, so a row loop
    calling this vectorises. The reduction: with a = |y|, b = |x|, t = min/max lies in [0, 1];
    for t > tan(pi/8) use atan(t) = pi/4 + atan((min - max) / (min + max)), so the polynomial
    only covers |z| <= tan(pi/8); then reflect by the octant and quadrant. Infinities give the
    limits of arctan2 (e.g. pi/4 for (inf, inf)) instead of NaN.
    """
    yf = np.float64(y)
    xf = np.float64(x)
    a = abs(yf)
    b = abs(xf)
    # An infinite side makes the angle an axis or a diagonal: replace (a, b) by its 0/1 pattern.
    inf_a = a == np.inf
    inf_b = b == np.inf
    any_inf = inf_a | inf_b
    a = (1.0 if inf_a else 0.0) if any_inf else a
    b = (1.0 if inf_b else 0.0) if any_inf else b
    swap = a > b
    mn = b if swap else a
    mx = a if swap else b
    # Halve near the top of the range so mn + mx cannot overflow (exact at these magnitudes).
    scale = 0.5 if mx > _HUGE else 1.0
    mn = mn * scale
    mx = mx * scale
    big = mn > _TAN_PI_8 * mx
    num = mn - mx if big else mn
    den = mn + mx if big else mx
    den = 1.0 if den == 0.0 else den
    z = num / den
    w = z * z
    p = _ATAN_C6
    p = p * w + _ATAN_C5
    p = p * w + _ATAN_C4
    p = p * w + _ATAN_C3
    p = p * w + _ATAN_C2
    p = p * w + _ATAN_C1
    p = p * w + _ATAN_C0
    r = z * p + (0.7853981633974483 if big else 0.0)
    r = 1.5707963267948966 - r if swap else r
    r = 3.141592653589793 - r if np.copysign(1.0, xf) < 0.0 else r
    return np.copysign(r, yf)


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
    ``angle_normalize`` returns (up to the sign at exactly pi, which the square removes). The angle
    comes from ``atan2_fast`` (within 1e-11 of ``np.arctan2``, computed in float64 for every input
    dtype) so the row loop vectorises; the rest is computed in float64 too and rounded once.
    """
    n = obs.shape[0]
    # Gather the two columns first: reading them with the row stride inside the vectorised loop
    # costs strided gathers (about 7 ns a row measured against 1 ns for contiguous columns).
    cos_th = np.empty(n)
    sin_th = np.empty(n)
    for i in range(n):
        cos_th[i] = obs[i, 0]
        sin_th[i] = obs[i, 1]
    out = np.empty(n, dtype=obs.dtype)
    for i in range(n):
        th = atan2_fast(sin_th[i], cos_th[i])
        thdot = np.float64(obs[i, 2])
        u = min(max(np.float64(act[i, 0]), -2.0), 2.0)
        out[i] = -(th * th + 0.1 * thdot * thdot + 0.001 * u * u)
    return out


@njit(cache=True)
def mountain_car_continuous(obs, act, next_obs):
    """Reward of gymnasium's MountainCarContinuous-v0.

    Parameters
    ----------
    obs : float array of shape (N, 2)
        (position, velocity) before the step; only its row count is used.
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
        if termination_fns.mountain_car_at_goal(next_obs[i, 0], next_obs[i, 1]):
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


# ---------------------------------------------------------------- reward gradients
# ``reward_grad_fn(obs, act, next_obs) -> (d_obs (N, D_obs), d_act (N, D_act), d_next_obs (N, D_obs))``:
# the gradient of each row's reward with respect to its three inputs, for backpropagation through
# a model step (``fastmbrl.models.ModelEnv.step_vjp``; course notes, section 5.4). Indicator terms
# (a goal bonus, "alive" while not terminated) are piecewise constant: their gradient is 0 almost
# everywhere, and so is theirs here. Arrays of the dtype of ``obs``. Like the rewards, each one is a
# hot-path specialisation written out for its environment; the shared parts are helpers
# (``_zero_grads``, ``_action_sq_norm_grad``).


@njit(cache=True)
def pendulum_grad(obs, act, next_obs):
    """Gradient of :func:`pendulum` with respect to (obs, act, next_obs).

    Parameters
    ----------
    obs : float array of shape (N, 3)
        (cos theta, sin theta, theta_dot).
    act : float array of shape (N, 1)
    next_obs : float array of shape (N, 3), unused

    Returns
    -------
    d_obs : array (N, 3)
    d_act : array (N, 1)
    d_next_obs : array (N, 3), zeros

    Notes
    -----
    ``r = -(th^2 + 0.1 thdot^2 + 0.001 u^2)`` with ``th = atan2(sin, cos)``, which is already
    ``angle_normalize(theta)``: d/dtheta of ``angle_normalize(theta)^2`` is ``2 angle_normalize(theta)``
    almost everywhere (not at theta = pi, where the wrap makes the reward's slope jump from -2 pi to
    2 pi). Through atan2, ``dth/dcos = -sin / rho^2`` and ``dth/dsin = cos / rho^2`` with
    ``rho^2 = cos^2 + sin^2`` (the gradient does not assume rho = 1, since a model's prediction
    need not lie on the circle). The torque is clipped to [-2, 2]: its gradient is 0 outside.
    """
    d_obs, d_act, d_next = _zero_grads(obs, act, next_obs)
    for i in range(obs.shape[0]):
        c = np.float64(obs[i, 0])
        s = np.float64(obs[i, 1])
        rho2 = c * c + s * s
        th = atan2_fast(s, c)
        if rho2 > 0.0:
            d_obs[i, 0] = 2.0 * th * s / rho2
            d_obs[i, 1] = -2.0 * th * c / rho2
        d_obs[i, 2] = -0.2 * np.float64(obs[i, 2])
        u = np.float64(act[i, 0])
        if -2.0 < u < 2.0:
            d_act[i, 0] = -0.002 * u
    return d_obs, d_act, d_next


@njit(cache=True)
def mountain_car_continuous_grad(obs, act, next_obs):
    """Gradient of :func:`mountain_car_continuous`: ``-0.2 a`` on the action, 0 elsewhere.

    Parameters
    ----------
    obs : float array of shape (N, 2)
    act : float array of shape (N, 1)
    next_obs : float array of shape (N, 2)

    Returns
    -------
    d_obs : array (N, 2), zeros
    d_act : array (N, 1)
    d_next_obs : array (N, 2), zeros (the goal bonus is piecewise constant)
    """
    d_obs, d_act, d_next = _zero_grads(obs, act, next_obs)
    _action_sq_norm_grad(act, 0.1, d_act)
    return d_obs, d_act, d_next


@njit(cache=True)
def constant_one_grad(obs, act, next_obs):
    """Gradient of :func:`constant_one`: zeros.

    Parameters
    ----------
    obs, act, next_obs : float arrays of shapes (N, D_obs), (N, D_act), (N, D_obs)

    Returns
    -------
    d_obs, d_act, d_next_obs : zero arrays of the inputs' shapes
    """
    return _zero_grads(obs, act, next_obs)
