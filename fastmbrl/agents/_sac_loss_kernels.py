"""SAC's pieces (Numba): the actor's action, and the critic, actor and temperature losses with
their gradients (SB3's definitions), each on its own; ``_sac_update_kernels`` fuses them.

Networks in the flat layout of ``fastmbrl.nn._flat``: the actor a 1-member ensemble
``D_obs -> hidden -> 2 D_act``, the twin critics one 2-member ensemble ``D_obs + D_act -> hidden -> 1``
(see ``fastmbrl.agents._sac_kernels``). NumPy twins in ``sac_reference``.
"""
import numpy as np
from numba import njit

from fastmbrl.agents._sac_rng_kernels import _sac_draw_normals
from fastmbrl.nn._mlp_kernels import _mlp_backward, _mlp_forward, _squash_head, _squash_head_vjp


@njit(cache=True)
def _concat_obs_act(obs, act):
    R, O = obs.shape
    A = act.shape[1]
    z = np.empty((R, O + A), dtype=obs.dtype)
    for r in range(R):
        for j in range(O):
            z[r, j] = obs[r, j]
        for j in range(A):
            z[r, O + j] = act[r, j]
    return z


@njit(cache=True)
def _sac_act(actor, dims_a, act_code, obs, deterministic, log_std_min, log_std_max, scale, bias,
             rng_state, a_out):
    """Actions a_out (R, A) for obs (R, D_obs): scale tanh(mean) + bias when deterministic, else a
    squashed-Gaussian sample with noise from the act stream (slot 2) of rng_state."""
    acts = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)
    out = acts[len(acts) - 1]
    R, A = a_out.shape
    if deterministic:
        for r in range(R):
            for j in range(A):
                a_out[r, j] = scale[j] * np.tanh(out[r, j]) + bias[j]
    else:
        eps = np.empty((R, A), dtype=obs.dtype)
        _sac_draw_normals(rng_state, 2, eps)
        logp = np.empty(R, dtype=obs.dtype)
        _squash_head(out, eps, log_std_min, log_std_max, scale, bias, a_out, logp)


@njit(cache=True)
def _critic_target_core(target, dims_c, act_code, next_obs, a_next, logp_next, reward, terminated,
                        alpha, gamma, y_out):
    """y = r + gamma (1 - terminated) (min_e Q'_e(s', a') - alpha log pi(a'|s'))."""
    z = _concat_obs_act(next_obs, a_next)
    q0 = _mlp_forward(target, dims_c, 2, 0, act_code, z)
    q1 = _mlp_forward(target, dims_c, 2, 1, act_code, z)
    _td_targets(q0[len(q0) - 1][:, 0], q1[len(q1) - 1][:, 0], logp_next, reward, terminated, alpha,
                gamma, y_out)


@njit(cache=True)
def _td_targets(q0, q1, logp_next, reward, terminated, alpha, gamma, y_out):
    """y = r + gamma (1 - terminated) (min(q0, q1) - alpha log pi(a'|s')), from the target critics'
    values q0, q1 (B,) at (s', a')."""
    for r in range(y_out.size):
        notdone = 0.0 if terminated[r] else 1.0
        y_out[r] = reward[r] + gamma * notdone * (min(q0[r], q1[r]) - alpha * logp_next[r])


@njit(cache=True)
def _sac_critic_target(actor, dims_a, target, dims_c, act_code, next_obs, reward, terminated,
                       eps_next, alpha, gamma, log_std_min, log_std_max, scale, bias, y_out):
    """TD targets y_out (B,) with the next action a' = squash(actor(s'), eps_next) and the target
    critics: y = r + gamma (1 - terminated) (min_e Q'_e(s', a') - alpha log pi(a'|s'))."""
    acts = _mlp_forward(actor, dims_a, 1, 0, act_code, next_obs)
    B, A = eps_next.shape
    a_next = np.empty((B, A), dtype=next_obs.dtype)
    logp = np.empty(B, dtype=next_obs.dtype)
    _squash_head(acts[len(acts) - 1], eps_next, log_std_min, log_std_max, scale, bias, a_next, logp)
    _critic_target_core(target, dims_c, act_code, next_obs, a_next, logp, reward, terminated, alpha,
                        gamma, y_out)


@njit(cache=True)
def _sac_critic_loss_grad(critic, dims_c, act_code, obs, act, y, grad_out):
    """TD loss 0.5 sum_e mean_b (Q_e(s, a) - y)^2 (SB3) and its gradient grad_out (critic's layout).

    Returns (loss, mean of Q over both members and the batch).
    """
    z = _concat_obs_act(obs, act)
    B = z.shape[0]
    loss = 0.0
    qsum = 0.0
    for e in range(2):
        acts = _mlp_forward(critic, dims_c, 2, e, act_code, z)
        q = acts[len(acts) - 1]
        dq = np.empty((B, 1), dtype=obs.dtype)
        for r in range(B):
            diff = q[r, 0] - y[r]
            loss += 0.5 * diff * diff / B
            qsum += q[r, 0]
            dq[r, 0] = diff / B
        _mlp_backward(critic, dims_c, 2, e, act_code, acts, dq, grad_out, True, dims_c[0])
    return loss, qsum / (2 * B)


@njit(cache=True)
def _actor_loss_grad_core(actor, dims_a, critic, dims_c, act_code, acts, obs, eps, alpha,
                          log_std_min, log_std_max, scale, bias, grad_out, logp_out):
    """Actor loss mean(alpha log pi(a|s) - min_e Q_e(s, a)) with a = squash(actor(s), eps), from the
    actor's activations ``acts``; writes its gradient (actor layout) and log pi (B,). Critics frozen."""
    out = acts[len(acts) - 1]
    B, A = eps.shape
    O = obs.shape[1]
    a = np.empty((B, A), dtype=obs.dtype)
    _squash_head(out, eps, log_std_min, log_std_max, scale, bias, a, logp_out)
    z = _concat_obs_act(obs, a)
    c0 = _mlp_forward(critic, dims_c, 2, 0, act_code, z)
    c1 = _mlp_forward(critic, dims_c, 2, 1, act_code, z)
    q0 = c0[len(c0) - 1]
    q1 = c1[len(c1) - 1]
    dq0 = np.zeros((B, 1), dtype=obs.dtype)
    dq1 = np.zeros((B, 1), dtype=obs.dtype)
    loss = 0.0
    for r in range(B):
        # torch.min over the twins sends the gradient to the first minimum
        if q1[r, 0] < q0[r, 0]:
            qmin = q1[r, 0]
            dq1[r, 0] = -1.0 / B
        else:
            qmin = q0[r, 0]
            dq0[r, 0] = -1.0 / B
        loss += (alpha * logp_out[r] - qmin) / B
    da = _mlp_backward(critic, dims_c, 2, 0, act_code, c0, dq0, grad_out, False, O)
    da += _mlp_backward(critic, dims_c, 2, 1, act_code, c1, dq1, grad_out, False, O)
    dout = np.empty((B, 2 * A), dtype=obs.dtype)
    # d/da of -min Q (da) and d/d log pi of alpha log pi, per row
    _squash_head_vjp(out, eps, da, np.full(B, alpha / B), log_std_min, log_std_max, scale, dout)
    _mlp_backward(actor, dims_a, 1, 0, act_code, acts, dout, grad_out, True, dims_a[0])
    return loss


@njit(cache=True)
def _sac_actor_loss_grad(actor, dims_a, critic, dims_c, act_code, obs, eps, alpha, log_std_min,
                         log_std_max, scale, bias, grad_out, logp_out):
    """Actor loss mean_b(alpha log pi(a|s) - min_e Q_e(s, a)), a = squash(actor(s), eps); its
    gradient with respect to the actor (grad_out) and log pi (logp_out (B,)). Returns the loss."""
    acts = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)
    return _actor_loss_grad_core(actor, dims_a, critic, dims_c, act_code, acts, obs, eps, alpha,
                                 log_std_min, log_std_max, scale, bias, grad_out, logp_out)


@njit(cache=True)
def _sac_temperature_loss_grad(log_alpha, logp, target_entropy):
    """SB3's temperature loss -mean(log_alpha (log pi + target_entropy)) and d/d log_alpha."""
    s = 0.0
    for r in range(logp.size):
        s += logp[r] + target_entropy
    g = -s / logp.size
    return log_alpha * g, g
