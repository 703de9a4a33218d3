"""The fused SAC update (Numba): one whole gradient step (critic, actor, temperature, Polyak) in
one call, and n of them on minibatches it draws itself from a replay buffer's arrays.

``_sac_update_in`` runs on two threads (``prange`` over 2) with the scratch arrays of
``_sac_workspace``, made once by the caller; the work split is the same for any thread count, so
results are bit-identical on one thread and two. See ``fastmbrl.agents._sac_kernels`` for the
conventions. NumPy twins in ``sac_reference``.
"""
import numpy as np
from numba import njit, prange

from fastmbrl.agents._sac_loss_kernels import (_concat_obs_act, _sac_temperature_loss_grad,
                                               _td_targets)
from fastmbrl.agents._sac_optim_kernels import (_adam_coeffs, _adam_range, _adam_update,
                                                _add_range, _polyak_range, _split)
from fastmbrl.agents._sac_rng_kernels import _sac_draw_normals, _sac_sample_indices
from fastmbrl.nn._mlp_kernels import (_act_size, _act_view, _backward_into, _forward_into,
                                      _squash_head, _squash_head_vjp)


@njit(cache=True)
def _sac_workspace(actor, critic, dims_a, dims_c, B):
    """The large scratch arrays of one SAC step at batch size B, for ``_sac_update_in``:
    (actor passes on s' and s, one critic pass per thread, backward scratch per thread, critic
    gradient, the actor's two partial gradients). About 4.5 MB at 256 x 256, batch 256. Made once
    and reused: allocated per step, memory of this size came fresh from the OS each time and
    page-faulted back in (0.84x whole-process wall for 1.5k updates in calls of 250, 2 threads)."""
    dt = actor.dtype
    wmax = 1
    for k in range(1, dims_c.size - 1):
        wmax = max(wmax, dims_c[k])
    for k in range(1, dims_a.size - 1):
        wmax = max(wmax, dims_a[k])
    abuf_a = np.empty((2, _act_size(dims_a, B)), dtype=dt)
    abuf_c = np.empty((2, _act_size(dims_c, B)), dtype=dt)
    dbuf = np.empty((2, 2 * B * wmax), dtype=dt)
    gc = np.empty_like(critic)
    ga = np.empty((2, actor.size), dtype=dt)
    return abuf_a, abuf_c, dbuf, gc, ga


@njit(cache=True)
def _sac_update(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v, critic_m,
                critic_v, alpha_state, steps, hp, scale, bias, obs, act, reward, next_obs,
                terminated, eps_next, eps_cur, metrics_out):
    """One SAC gradient step in SB3's order; everything is updated in place (see
    ``_sac_update_in``)."""
    _sac_update_in(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v, critic_m,
                   critic_v, alpha_state, steps, hp, scale, bias, obs, act, reward, next_obs,
                   terminated, eps_next, eps_cur, metrics_out,
                   _sac_workspace(actor, critic, dims_a, dims_c, eps_cur.shape[0]))


@njit(cache=True, parallel=True)
def _sac_update_in(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v, critic_m,
                   critic_v, alpha_state, steps, hp, scale, bias, obs, act, reward, next_obs,
                   terminated, eps_next, eps_cur, metrics_out, work):
    """One SAC gradient step in SB3's order, with the scratch arrays ``work`` of
    ``_sac_workspace`` (every element written before it is read); everything is updated in place.

    alpha_state (3,) = [log_alpha, Adam m, Adam v]; steps int64 (3,) Adam counts (critic, actor,
    alpha); hp float64 (11,) = [gamma, tau, lr_actor, lr_critic, lr_alpha, beta1, beta2, adam_eps,
    log_std_min, log_std_max, target_entropy]. metrics_out (6,) = [critic loss, actor loss,
    temperature loss, alpha used, entropy estimate -mean log pi, mean Q].

    alpha = exp(log_alpha) before its own step is used by the critic target and the actor loss, and the
    temperature loss uses log pi of the actor before its step: exactly SB3's ``SAC.train``.

    Two threads (Numba's ``prange`` over 2; ``numba.set_num_threads`` picks 1 or 2, BLAS must be on
    one thread): the actor's passes on s' and s, then the twin critics member by member, the actor's
    backward pass by halves of the rows (two partial gradients, summed), Adam and Polyak by halves of
    the parameters. The work split is the same for any thread count, so results are bit-identical
    on one thread and two.
    """
    gamma, tau, lr_a, lr_c, lr_t = hp[0], hp[1], hp[2], hp[3], hp[4]
    b1, b2, aeps, lsmin, lsmax, tent = hp[5], hp[6], hp[7], hp[8], hp[9], hp[10]
    B, A = eps_cur.shape
    O = obs.shape[1]
    dt = obs.dtype
    alpha = np.exp(np.float64(alpha_state[0]))
    abuf_a, abuf_c, dbuf, gc, ga = work
    no_dx = np.empty((B, 0), dtype=dt)

    # ---- the actor's forward passes: s' (for the target) and s (for its own loss)
    for t in prange(2):
        x = next_obs if t == 0 else obs
        _forward_into(actor, dims_a, 1, 0, act_code, x, abuf_a[t])
    L_a = dims_a.size - 1
    out_next = _act_view(abuf_a[0], dims_a, B, L_a)
    out_cur = _act_view(abuf_a[1], dims_a, B, L_a)

    # ---- critic step: y = r + gamma (1 - terminated) (min_e Q'_e(s', a') - alpha log pi(a'|s'))
    a_next = np.empty((B, A), dtype=dt)
    logp_next = np.empty(B, dtype=dt)
    _squash_head(out_next, eps_next, lsmin, lsmax, scale, bias, a_next, logp_next)
    z_next = _concat_obs_act(next_obs, a_next)
    q2 = np.empty((2, B), dtype=dt)
    for e in prange(2):
        qe = _forward_into(target, dims_c, 2, e, act_code, z_next, abuf_c[e])
        for r in range(B):
            q2[e, r] = qe[r, 0]
    y = np.empty(B, dtype=dt)
    _td_targets(q2[0], q2[1], logp_next, reward, terminated, alpha, gamma, y)
    # TD loss 0.5 sum_e mean_b (Q_e(s, a) - y)^2 (SB3), member by member
    z = _concat_obs_act(obs, act)
    dq = np.empty((2, B, 1), dtype=dt)
    part = np.zeros((2, 2))                                  # [member, (loss, sum of Q)]
    for e in prange(2):
        qe = _forward_into(critic, dims_c, 2, e, act_code, z, abuf_c[e])
        for r in range(B):
            diff = qe[r, 0] - y[r]
            part[e, 0] += 0.5 * diff * diff / B
            part[e, 1] += qe[r, 0]
            dq[e, r, 0] = diff / B
        _backward_into(critic, dims_c, 2, e, act_code, z, abuf_c[e], 0, B, dq[e], gc, True,
                       dims_c[0], no_dx, dbuf[e])
    closs = part[0, 0] + part[1, 0]
    mean_q = (part[0, 1] + part[1, 1]) / (2 * B)
    steps[0] += 1
    cc = _adam_coeffs(critic, lr_c, b1, b2, aeps, steps[0])
    for t in prange(2):
        i0, i1 = _split(critic.size, t, 2)
        _adam_range(critic, gc, critic_m, critic_v, cc, i0, i1)

    # ---- actor step, with the updated critics: mean(alpha log pi(a|s) - min_e Q_e(s, a))
    a_cur = np.empty((B, A), dtype=dt)
    logp = np.empty(B, dtype=dt)
    _squash_head(out_cur, eps_cur, lsmin, lsmax, scale, bias, a_cur, logp)
    z_cur = _concat_obs_act(obs, a_cur)
    da = np.empty((2, B, A), dtype=dt)
    dq_all = np.empty((B, 1), dtype=dt)
    for r in range(B):
        dq_all[r, 0] = -1.0 / B
    for e in prange(2):
        # the input gradient of row r depends on row r alone: take every row's -1/B here and keep
        # the rows where member e is the minimum below (as torch.min's gradient does)
        qe = _forward_into(critic, dims_c, 2, e, act_code, z_cur, abuf_c[e])
        for r in range(B):
            q2[e, r] = qe[r, 0]
        _backward_into(critic, dims_c, 2, e, act_code, z_cur, abuf_c[e], 0, B, dq_all, gc, False,
                       O, da[e], dbuf[e])
    da_min = np.empty((B, A), dtype=dt)
    aloss = 0.0
    for r in range(B):
        m = 1 if q2[1, r] < q2[0, r] else 0       # torch.min sends the gradient to the first minimum
        aloss += (alpha * logp[r] - q2[m, r]) / B
        for j in range(A):
            da_min[r, j] = da[m, r, j]
    dout = np.empty((B, 2 * A), dtype=dt)
    _squash_head_vjp(out_cur, eps_cur, da_min, np.full(B, alpha / B), lsmin, lsmax, scale, dout)
    for t in prange(2):
        r0 = t * B // 2
        r1 = (t + 1) * B // 2
        _backward_into(actor, dims_a, 1, 0, act_code, obs, abuf_a[1], r0, r1, dout[r0:r1], ga[t],
                       True, dims_a[0], no_dx, dbuf[t])
    steps[1] += 1
    ca = _adam_coeffs(actor, lr_a, b1, b2, aeps, steps[1])
    for t in prange(2):
        i0, i1 = _split(actor.size, t, 2)
        _add_range(ga[0], ga[1], i0, i1)
        _adam_range(actor, ga[0], actor_m, actor_v, ca, i0, i1)

    # ---- temperature step
    tloss, tg = _sac_temperature_loss_grad(np.float64(alpha_state[0]), logp, tent)
    steps[2] += 1
    g1 = np.empty(1, dtype=alpha_state.dtype)
    g1[0] = tg
    _adam_update(alpha_state[0:1], g1, alpha_state[1:2], alpha_state[2:3], lr_t, b1, b2, aeps,
                 steps[2])
    # ---- target critics
    kt = np.empty(2, dtype=dt)
    kt[0] = 1.0 - tau
    kt[1] = tau
    for t in prange(2):
        i0, i1 = _split(target.size, t, 2)
        _polyak_range(target, critic, kt[0], kt[1], i0, i1)
    ent = 0.0
    for r in range(B):
        ent -= logp[r]
    metrics_out[0] = closs
    metrics_out[1] = aloss
    metrics_out[2] = tloss
    metrics_out[3] = alpha
    metrics_out[4] = ent / B
    metrics_out[5] = mean_q


@njit(cache=True)
def _gather_rows(buf_obs, buf_act, buf_reward, buf_next_obs, buf_terminated, idx, row0, obs, act,
                 rew, nobs, term):
    """Copy buffer rows ``idx`` into minibatch rows ``row0 .. row0 + len(idx) - 1`` (in place)."""
    for k in range(idx.shape[0]):
        i = idx[k]
        r = row0 + k
        for j in range(buf_obs.shape[1]):
            obs[r, j] = buf_obs[i, j]
            nobs[r, j] = buf_next_obs[i, j]
        for j in range(buf_act.shape[1]):
            act[r, j] = buf_act[i, j]
        rew[r] = buf_reward[i]
        term[r] = buf_terminated[i]


@njit(cache=True)
def _sac_update_from(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v, critic_m,
                     critic_v, alpha_state, steps, hp, scale, bias, buf_obs, buf_act, buf_reward,
                     buf_next_obs, buf_terminated, n_rows, batch_size, rng_state, metrics_out, work):
    """``metrics_out.shape[0]`` SAC updates on minibatches drawn uniformly with replacement from the
    first n_rows rows of the buffer arrays; per update: batch_size indices, then 2 batch_size D_act
    normals (next-state noise first, then current-state noise), all from stream 1 of rng_state.
    metrics_out (n_updates, 6) receives each update's metrics (see ``_sac_update``); work is the
    scratch of ``_sac_workspace`` at batch_size."""
    B = batch_size
    O = buf_obs.shape[1]
    A = buf_act.shape[1]
    dt = buf_obs.dtype
    idx = np.empty(B, dtype=np.int64)
    obs = np.empty((B, O), dtype=dt)
    act = np.empty((B, A), dtype=dt)
    rew = np.empty(B, dtype=dt)
    nobs = np.empty((B, O), dtype=dt)
    term = np.empty(B, dtype=np.bool_)
    noise = np.empty((2, B, A), dtype=dt)
    for u in range(metrics_out.shape[0]):
        _sac_sample_indices(rng_state, n_rows, idx)
        _sac_draw_normals(rng_state, 1, noise)
        _gather_rows(buf_obs, buf_act, buf_reward, buf_next_obs, buf_terminated, idx, 0, obs, act,
                     rew, nobs, term)
        _sac_update_in(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v,
                       critic_m, critic_v, alpha_state, steps, hp, scale, bias, obs, act, rew,
                       nobs, term, noise[0], noise[1], metrics_out[u], work)
