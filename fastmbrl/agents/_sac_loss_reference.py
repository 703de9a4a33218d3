"""NumPy twins of ``_sac_loss_kernels`` (same names, same signatures, same results up to
rounding)."""
import numpy as np

from fastmbrl.agents._sac_rng_reference import _sac_draw_normals
from fastmbrl.nn._mlp_reference import _mlp_backward, _mlp_forward, _squash_head, _squash_head_vjp


def _concat_obs_act(obs, act):
    return np.concatenate([obs, act], axis=1)


def _sac_act(actor, dims_a, act_code, obs, deterministic, log_std_min, log_std_max, scale, bias,
             rng_state, a_out):
    """Twin of the kernel."""
    out = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)[-1]
    A = a_out.shape[1]
    if deterministic:
        a_out[...] = scale * np.tanh(out[:, :A]) + bias
    else:
        eps = np.empty(a_out.shape, dtype=obs.dtype)
        _sac_draw_normals(rng_state, 2, eps)
        _squash_head(out, eps, log_std_min, log_std_max, scale, bias, a_out,
                     np.empty(obs.shape[0], dtype=obs.dtype))


def _critic_target_core(target, dims_c, act_code, next_obs, a_next, logp_next, reward, terminated,
                        alpha, gamma, y_out):
    z = _concat_obs_act(next_obs, a_next)
    q = np.minimum(_mlp_forward(target, dims_c, 2, 0, act_code, z)[-1][:, 0],
                   _mlp_forward(target, dims_c, 2, 1, act_code, z)[-1][:, 0])
    y_out[...] = reward + gamma * (1.0 - terminated) * (q - alpha * logp_next)


def _sac_critic_target(actor, dims_a, target, dims_c, act_code, next_obs, reward, terminated,
                       eps_next, alpha, gamma, log_std_min, log_std_max, scale, bias, y_out):
    """Twin of the kernel."""
    out = _mlp_forward(actor, dims_a, 1, 0, act_code, next_obs)[-1]
    a_next = np.empty(eps_next.shape, dtype=next_obs.dtype)
    logp = np.empty(next_obs.shape[0], dtype=next_obs.dtype)
    _squash_head(out, eps_next, log_std_min, log_std_max, scale, bias, a_next, logp)
    _critic_target_core(target, dims_c, act_code, next_obs, a_next, logp, reward, terminated, alpha,
                        gamma, y_out)


def _sac_critic_loss_grad(critic, dims_c, act_code, obs, act, y, grad_out):
    """Twin of the kernel."""
    z = _concat_obs_act(obs, act)
    B = z.shape[0]
    loss, qsum = 0.0, 0.0
    for e in range(2):
        acts = _mlp_forward(critic, dims_c, 2, e, act_code, z)
        q = acts[-1][:, 0]
        diff = q.astype(np.float64) - y
        loss += 0.5 * np.mean(diff * diff)
        qsum += q.sum(dtype=np.float64)
        dq = (diff / B).astype(obs.dtype)[:, None]
        _mlp_backward(critic, dims_c, 2, e, act_code, acts, dq, grad_out, True, dims_c[0])
    return loss, qsum / (2 * B)


def _actor_loss_grad_core(actor, dims_a, critic, dims_c, act_code, acts, obs, eps, alpha,
                          log_std_min, log_std_max, scale, bias, grad_out, logp_out):
    out = acts[-1]
    B, A = eps.shape
    O = obs.shape[1]
    a = np.empty((B, A), dtype=obs.dtype)
    _squash_head(out, eps, log_std_min, log_std_max, scale, bias, a, logp_out)
    z = _concat_obs_act(obs, a)
    c0 = _mlp_forward(critic, dims_c, 2, 0, act_code, z)
    c1 = _mlp_forward(critic, dims_c, 2, 1, act_code, z)
    q0, q1 = c0[-1][:, 0], c1[-1][:, 0]
    pick1 = q1 < q0                       # torch.min: the first minimum gets the gradient
    qmin = np.where(pick1, q1, q0)
    loss = np.mean(alpha * logp_out.astype(np.float64) - qmin)
    dq0 = np.where(pick1, 0.0, -1.0 / B).astype(obs.dtype)[:, None]
    dq1 = np.where(pick1, -1.0 / B, 0.0).astype(obs.dtype)[:, None]
    da = (_mlp_backward(critic, dims_c, 2, 0, act_code, c0, dq0, grad_out, False, O)
          + _mlp_backward(critic, dims_c, 2, 1, act_code, c1, dq1, grad_out, False, O))
    dout = np.empty((B, 2 * A), dtype=obs.dtype)
    _squash_head_vjp(out, eps, da, np.full(B, alpha / B), log_std_min, log_std_max, scale, dout)
    _mlp_backward(actor, dims_a, 1, 0, act_code, acts, dout, grad_out, True, dims_a[0])
    return float(loss)


def _sac_actor_loss_grad(actor, dims_a, critic, dims_c, act_code, obs, eps, alpha, log_std_min,
                         log_std_max, scale, bias, grad_out, logp_out):
    """Twin of the kernel."""
    acts = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)
    return _actor_loss_grad_core(actor, dims_a, critic, dims_c, act_code, acts, obs, eps, alpha,
                                 log_std_min, log_std_max, scale, bias, grad_out, logp_out)


def _sac_temperature_loss_grad(log_alpha, logp, target_entropy):
    """Twin of the kernel."""
    g = -np.mean(logp.astype(np.float64) + target_entropy)
    return log_alpha * g, g
