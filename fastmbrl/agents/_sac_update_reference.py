"""NumPy twins of ``_sac_update_kernels`` (same names, same signatures): the update as the
composition of the twins of its pieces."""
import numpy as np

from fastmbrl.agents._sac_loss_reference import (_sac_actor_loss_grad, _sac_critic_loss_grad,
                                                 _sac_critic_target, _sac_temperature_loss_grad)
from fastmbrl.agents._sac_optim_reference import _adam_update, _polyak_update
from fastmbrl.agents._sac_rng_reference import _sac_draw_normals, _sac_sample_indices
from fastmbrl.nn._mlp_reference import _act_size


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
