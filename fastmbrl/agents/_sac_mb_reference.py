"""NumPy twins of ``_sac_mb_kernels`` (same names, same signatures)."""
import numpy as np

from fastmbrl.agents._sac_loss_reference import _concat_obs_act
from fastmbrl.nn._mlp_reference import _mlp_backward, _mlp_forward, _squash_head, _squash_head_vjp


def _actor_sample(actor, dims_a, act_code, obs, eps, log_std_min, log_std_max, scale, bias, a_out,
                  logp_out):
    """Twin of the kernel."""
    out = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)[-1]
    _squash_head(out, eps, log_std_min, log_std_max, scale, bias, a_out, logp_out)


def _actor_vjp(actor, dims_a, act_code, obs, eps, d_act, d_logp, log_std_min, log_std_max, scale,
               bias, grad_out, d_obs_out):
    """Twin of the kernel."""
    acts = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)
    R, A = eps.shape
    dout = np.empty((R, 2 * A), dtype=obs.dtype)
    _squash_head_vjp(acts[-1], eps, d_act, d_logp, log_std_min, log_std_max, scale, dout)
    d_obs_out[...] = _mlp_backward(actor, dims_a, 1, 0, act_code, acts, dout, grad_out, True, 0)


def _critic_min_vjp(critic, dims_c, act_code, obs, act, w, qmin_out, d_obs_out, d_act_out):
    """Twin of the kernel."""
    z = _concat_obs_act(obs, act)
    O = obs.shape[1]
    c0 = _mlp_forward(critic, dims_c, 2, 0, act_code, z)
    c1 = _mlp_forward(critic, dims_c, 2, 1, act_code, z)
    q0, q1 = c0[-1][:, 0], c1[-1][:, 0]
    pick1 = q1 < q0
    qmin_out[...] = np.where(pick1, q1, q0)
    dq0 = np.where(pick1, 0.0, w).astype(obs.dtype)[:, None]
    dq1 = np.where(pick1, w, 0.0).astype(obs.dtype)[:, None]
    dz = (_mlp_backward(critic, dims_c, 2, 0, act_code, c0, dq0, critic, False, 0)
          + _mlp_backward(critic, dims_c, 2, 1, act_code, c1, dq1, critic, False, 0))
    d_obs_out[...] = dz[:, :O]
    d_act_out[...] = dz[:, O:]
