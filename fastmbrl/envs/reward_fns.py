"""Exact reward functions of the environments fastmbrl knows, as Numba kernels.

Design: every function has the signature ``reward_fn(obs, act, next_obs) -> reward`` with obs and
next_obs float arrays of shape (N, D_obs), act of shape (N, D_act), and returns a 1-D array (N,) of
the inputs' dtype. They are module-level ``@njit(cache=True)`` functions so the compiled planning
rollout can call them on every row at full speed; called from Python on NumPy arrays they work the
same way (Numba compiles one specialisation per dtype/layout). Each one loops over rows, computes
in the input precision, and reproduces the environment's own reward on real transitions (tested to
1e-5 with float64 inputs; see tests/envs/test_reward_fns.py).
"""
# Hot-path specialisations, written out on purpose: each reward below is a separate compiled kernel
# that the planning rollout calls on every particle row, and its body is the environment's own
# formula. They share only the row-loop skeleton and the docstring layout; the terms two rewards
# have in common are helpers (``_action_sq_norm``, and ``termination_fns`` for goal and alive).
import numpy as np
from numba import njit

from fastmbrl.envs import termination_fns


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
def _action_sq_norm(act, i):
    """``sum_j act[i, j]^2``, accumulated in float64 in column order (the control cost)."""
    ctrl = 0.0
    for j in range(act.shape[1]):
        ctrl += act[i, j] * act[i, j]
    return ctrl


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


# reward function -> its gradient, for every built-in reward
_GRADS = ((pendulum, pendulum_grad), (mountain_car_continuous, mountain_car_continuous_grad),
          (constant_one, constant_one_grad), (inverted_pendulum, inverted_pendulum_grad),
          (reacher, reacher_grad), (half_cheetah, half_cheetah_grad), (hopper, hopper_grad),
          (walker2d, walker2d_grad), (ant, ant_grad), (humanoid, humanoid_grad))


def gradient_of(reward_fn):
    """The ``reward_grad_fn`` of a built-in reward function of this module, else None.

    Parameters
    ----------
    reward_fn : callable

    Returns
    -------
    callable or None
        ``reward_grad_fn(obs, act, next_obs) -> (d_obs, d_act, d_next_obs)``.
    """
    for fn, grad in _GRADS:
        if reward_fn is fn:
            return grad
    return None
