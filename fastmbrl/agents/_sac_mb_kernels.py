"""Pieces of model-based gradients through the SAC networks (Numba), for
``fastmbrl.agents._mb_grads``: the actor's sample with its vector-Jacobian product, and the twin
critics' minimum with its input gradient. NumPy twins in ``sac_reference``.
"""
import numpy as np
from numba import njit

from fastmbrl.agents._sac_loss_kernels import _concat_obs_act
from fastmbrl.nn._mlp_kernels import _mlp_backward, _mlp_forward, _squash_head, _squash_head_vjp


@njit(cache=True)
def _actor_sample(actor, dims_a, act_code, obs, eps, log_std_min, log_std_max, scale, bias, a_out,
                  logp_out):
    """Squashed-Gaussian actions a_out (R, A) and log pi logp_out (R,) for obs (R, D_obs) with the
    given standard normal eps (R, A): ``_squash_head`` on the actor's output."""
    acts = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)
    _squash_head(acts[len(acts) - 1], eps, log_std_min, log_std_max, scale, bias, a_out, logp_out)


@njit(cache=True)
def _actor_vjp(actor, dims_a, act_code, obs, eps, d_act, d_logp, log_std_min, log_std_max, scale,
               bias, grad_out, d_obs_out):
    """Vector-Jacobian product of ``(a, log pi) = actor_sample(obs, eps)`` (eps fixed).

    d_act (R, A) and d_logp (R,) are the cotangents of the action and of log pi; writes the actor's
    parameter gradient grad_out (actor layout, overwritten) and d_obs_out (R, D_obs). The actor's
    forward pass is recomputed from obs (the caller keeps only obs and eps per step).
    """
    acts = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)
    out = acts[len(acts) - 1]
    R, A = eps.shape
    dout = np.empty((R, 2 * A), dtype=obs.dtype)
    _squash_head_vjp(out, eps, d_act, d_logp, log_std_min, log_std_max, scale, dout)
    dx = _mlp_backward(actor, dims_a, 1, 0, act_code, acts, dout, grad_out, True, 0)
    for r in range(R):
        for j in range(dx.shape[1]):
            d_obs_out[r, j] = dx[r, j]


@njit(cache=True)
def _critic_min_vjp(critic, dims_c, act_code, obs, act, w, qmin_out, d_obs_out, d_act_out):
    """qmin_out (R,) = min_e Q_e(obs, act) and the input gradient of sum_r w_r qmin_r: d_obs_out
    (R, D_obs), d_act_out (R, D_act). Ties send the gradient to the first member (torch.min)."""
    z = _concat_obs_act(obs, act)
    R, O = obs.shape
    c0 = _mlp_forward(critic, dims_c, 2, 0, act_code, z)
    c1 = _mlp_forward(critic, dims_c, 2, 1, act_code, z)
    q0 = c0[len(c0) - 1]
    q1 = c1[len(c1) - 1]
    dq0 = np.zeros((R, 1), dtype=obs.dtype)
    dq1 = np.zeros((R, 1), dtype=obs.dtype)
    for r in range(R):
        if q1[r, 0] < q0[r, 0]:
            qmin_out[r] = q1[r, 0]
            dq1[r, 0] = w[r]
        else:
            qmin_out[r] = q0[r, 0]
            dq0[r, 0] = w[r]
    dz0 = _mlp_backward(critic, dims_c, 2, 0, act_code, c0, dq0, critic, False, 0)
    dz1 = _mlp_backward(critic, dims_c, 2, 1, act_code, c1, dq1, critic, False, 0)
    for r in range(R):
        for j in range(O):
            d_obs_out[r, j] = dz0[r, j] + dz1[r, j]
        for j in range(act.shape[1]):
            d_act_out[r, j] = dz0[r, O + j] + dz1[r, O + j]
