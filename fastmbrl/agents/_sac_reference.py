"""NumPy twins of ``_sac_kernels``: same names, same signatures, same results (up to rounding).

Vectorized NumPy throughout; ``FASTMBRL_PUREPYTHON=1`` makes ``fastmbrl.agents.sac`` run on these.
See ``_sac_kernels`` for the layout and the conventions (counter-based RNG, in-place updates).
"""
import numpy as np

from fastmbrl.nn._mlp_reference import (_act_size, _act_view, _backward_into,  # noqa: F401
                                        _forward_into, _layer, _mlp_backward, _mlp_forward,
                                        _softplus, _squash_head, _squash_head_vjp)
from fastmbrl.nn._rng_reference import GOLDEN as _GOLDEN
from fastmbrl.nn._rng_reference import _mix64


def _draws(key, start, n):
    with np.errstate(over="ignore"):
        return _mix64(key + (start + np.arange(n, dtype=np.uint64)) * _GOLDEN)


def _sac_sample_indices(rng_state, n_rows, out):
    """Twin of the kernel: uniform row indices in [0, n_rows) from stream 0 of rng_state."""
    x = _draws(rng_state[0], rng_state[1], out.size)
    out[...] = (((x >> np.uint64(32)) * np.uint64(n_rows)) >> np.uint64(32)).astype(np.int64)
    rng_state[1] = rng_state[1] + np.uint64(out.size)


def _sac_draw_normals(rng_state, slot, out):
    """Twin of the kernel: standard normals by Box-Muller from stream ``slot`` (1 update, 2 act)."""
    key = rng_state[0] ^ _GOLDEN if slot == 2 else rng_state[0]
    x = _draws(key, rng_state[slot], 2 * out.size)
    u1 = 1.0 - (x[0::2] >> np.uint64(11)).astype(np.float64) * 1.1102230246251565e-16
    u2 = (x[1::2] >> np.uint64(11)).astype(np.float64) * 1.1102230246251565e-16
    out[...] = (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).reshape(out.shape)
    rng_state[slot] = rng_state[slot] + np.uint64(2 * out.size)


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


def _adam_update(param, grad, m, v, lr, beta1, beta2, eps, step):
    """Twin of the kernel (torch.optim.Adam's formula)."""
    m[...] = beta1 * m + (1.0 - beta1) * grad
    v[...] = beta2 * v + (1.0 - beta2) * grad * grad
    step_size = lr / (1.0 - beta1 ** step)
    param -= (step_size * m / (np.sqrt(v) / np.sqrt(1.0 - beta2 ** step) + eps)).astype(param.dtype)


def _polyak_update(target, source, tau):
    """Twin of the kernel."""
    target[...] = target * (1.0 - tau) + source * tau


def _adam_coeffs(like, lr, beta1, beta2, eps, step):
    """Twin of the kernel."""
    return np.array([beta1, 1.0 - beta1, beta2, 1.0 - beta2, lr / (1.0 - beta1 ** step),
                     1.0 / np.sqrt(1.0 - beta2 ** step), eps], dtype=like.dtype)


def _adam_range(param, grad, m, v, c, i0, i1):
    """Twin of the kernel."""
    b1, nb1, b2, nb2, step_size, inv_bc2s, ep = c
    g = grad[i0:i1]
    m[i0:i1] = b1 * m[i0:i1] + nb1 * g
    v[i0:i1] = b2 * v[i0:i1] + nb2 * g * g
    param[i0:i1] -= step_size * m[i0:i1] / (np.sqrt(v[i0:i1]) * inv_bc2s + ep)


def _sac_workspace(actor, critic, dims_a, dims_c, B):
    """Twin of the kernel: the same arrays (the twins themselves allocate their own)."""
    wmax = max([1] + [int(d) for d in dims_c[1:-1]] + [int(d) for d in dims_a[1:-1]])
    return (np.empty((2, _act_size(dims_a, B)), actor.dtype),
            np.empty((2, _act_size(dims_c, B)), actor.dtype),
            np.empty((2, 2 * B * wmax), actor.dtype), np.empty_like(critic),
            np.empty((2, actor.size), actor.dtype))


def _sac_update(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v, critic_m,
                critic_v, alpha_state, steps, hp, scale, bias, obs, act, reward, next_obs,
                terminated, eps_next, eps_cur, metrics_out):
    """Twin of the kernel."""
    gamma, tau, lr_a, lr_c, lr_t, b1, b2, aeps, lsmin, lsmax, tent = (float(h) for h in hp)
    B, _A = eps_cur.shape
    alpha = float(np.exp(np.float64(alpha_state[0])))
    # ---- critic step
    y = np.empty(B, dtype=obs.dtype)
    _sac_critic_target(actor, dims_a, target, dims_c, act_code, next_obs, reward, terminated,
                       eps_next, alpha, gamma, lsmin, lsmax, scale, bias, y)
    gc = np.empty_like(critic)
    closs, mean_q = _sac_critic_loss_grad(critic, dims_c, act_code, obs, act, y, gc)
    steps[0] += 1
    _adam_update(critic, gc, critic_m, critic_v, lr_c, b1, b2, aeps, steps[0])
    # ---- actor step, with the updated critics
    ga = np.empty_like(actor)
    logp = np.empty(B, dtype=obs.dtype)
    aloss = _sac_actor_loss_grad(actor, dims_a, critic, dims_c, act_code, obs, eps_cur, alpha,
                                 lsmin, lsmax, scale, bias, ga, logp)
    steps[1] += 1
    _adam_update(actor, ga, actor_m, actor_v, lr_a, b1, b2, aeps, steps[1])
    # ---- temperature step
    tloss, tg = _sac_temperature_loss_grad(float(alpha_state[0]), logp, tent)
    steps[2] += 1
    _adam_update(alpha_state[0:1], np.array([tg], dtype=alpha_state.dtype), alpha_state[1:2],
                 alpha_state[2:3], lr_t, b1, b2, aeps, steps[2])
    # ---- target critics
    _polyak_update(target, critic, tau)
    metrics_out[...] = (closs, aloss, tloss, alpha, -np.mean(logp, dtype=np.float64), mean_q)


def _sac_update_from(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v, critic_m,
                     critic_v, alpha_state, steps, hp, scale, bias, buf_obs, buf_act, buf_reward,
                     buf_next_obs, buf_terminated, n_rows, batch_size, rng_state, metrics_out, work):
    """Twin of the kernel (work, the kernel's scratch, is not used: the twin allocates its own)."""
    A = buf_act.shape[1]
    idx = np.empty(batch_size, dtype=np.int64)
    noise = np.empty((2, batch_size, A), dtype=buf_obs.dtype)
    for u in range(metrics_out.shape[0]):
        _sac_sample_indices(rng_state, n_rows, idx)
        _sac_draw_normals(rng_state, 1, noise)
        _sac_update(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v, critic_m,
                    critic_v, alpha_state, steps, hp, scale, bias, buf_obs[idx], buf_act[idx],
                    buf_reward[idx], buf_next_obs[idx], buf_terminated[idx], noise[0], noise[1],
                    metrics_out[u])


# ------------------------------------------- pieces of model-based gradients (fastmbrl.agents._mb_grads)
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
