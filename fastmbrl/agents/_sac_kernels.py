"""Numba kernels of soft actor-critic (SAC): the critic, actor and temperature steps, Polyak, sampling.

Design
------
- Networks live in the flat layout of ``fastmbrl.nn._flat`` (``W_l (E, D_l, D_l+1), b_l (E, D_l+1)``
  layer after layer): the actor is a 1-member ensemble ``D_obs -> hidden -> 2 D_act`` (mean, raw
  log-std), the twin critics one 2-member ensemble ``D_obs + D_act -> hidden -> 1``.
- Matrix products are ``np.dot`` on contiguous 2-D views, which Numba hands to scipy's BLAS
  (``?gemm``, transposes passed as flags, no copies); everything element-wise (bias + ReLU, the
  squashed-Gaussian head, its backward pass, Adam, Polyak) is a plain loop that LLVM vectorizes for
  the host CPU (AVX-512 where present).
- ``_sac_update`` is one whole gradient step (critic, actor, temperature, Polyak) in one call;
  ``_sac_update_from`` runs n of them, drawing the minibatch indices and the Gaussian noise itself from
  a counter-based generator (splitmix64 of key + counter), so its state is two integers and the
  NumPy twin reproduces every draw. The step's large scratch arrays (``_sac_workspace``) are
  made once by the caller (``SAC`` keeps them) and passed in, not allocated per step.
- The step expects denormals flushed to zero (x86 FTZ/DAZ) on its threads, which ``SAC`` arranges
  around each call (``fastmbrl.nn._numba._flush_denormals_team``): subnormal float32 values, which
  SAC's training produces, take microcode assists on Intel cores. The kernels run correctly
  without it, only slower; the NumPy twins keep IEEE subnormals, and results differ only below
  float32's smallest normal number (1.2e-38).
- Nothing here validates: ``fastmbrl.agents.sac.SAC`` checks shapes and dtypes. Every function has a
  NumPy twin of the same name and signature in ``_sac_reference.py``.
"""
import numpy as np
from numba import njit, prange

# the network pieces (re-exported: the twin tests and the rollout compare them by these names)
from fastmbrl.nn._mlp_kernels import (_act_backward, _act_size, _act_view,  # noqa: F401
                                      _backward_into, _bias_act, _bias_grad, _forward_into,
                                      _layer, _mlp_backward, _mlp_forward, _squash_head,
                                      _squash_head_vjp)
from fastmbrl.nn._rng import GOLDEN as _GOLDEN
from fastmbrl.nn._rng import _mix64

_TWO_PI = 6.283185307179586


# --------------------------------------------------------------------------------------------- RNG
@njit(cache=True)
def _sac_sample_indices(rng_state, n_rows, out):
    """Draw ``out.size`` row indices uniformly in [0, n_rows) from stream 0 of ``rng_state``.

    rng_state : uint64 (3,) = [key, update counter, act counter]; the update counter advances.
    Index = high 32 bits of a splitmix64 draw times n_rows, shifted down (Lemire's multiply-shift).
    """
    key = rng_state[0]
    c = rng_state[1]
    n = np.uint64(n_rows)
    for i in range(out.size):
        x = _mix64(key + (c + np.uint64(i)) * _GOLDEN)
        out[i] = np.int64(((x >> np.uint64(32)) * n) >> np.uint64(32))
    rng_state[1] = c + np.uint64(out.size)


@njit(cache=True)
def _sac_draw_normals(rng_state, slot, out):
    """Fill ``out`` (any shape, C order) with standard normal draws (Box-Muller, cosine branch).

    slot 1 uses the update counter, slot 2 the act counter (its key is ``key ^ golden``); the counter
    advances by 2 per draw.
    """
    key = rng_state[0]
    if slot == 2:
        key = key ^ _GOLDEN
    c = rng_state[slot]
    flat = out.reshape(out.size)
    for i in range(out.size):
        x1 = _mix64(key + (c + np.uint64(2 * i)) * _GOLDEN)
        x2 = _mix64(key + (c + np.uint64(2 * i + 1)) * _GOLDEN)
        u1 = 1.0 - np.float64(x1 >> np.uint64(11)) * 1.1102230246251565e-16
        u2 = np.float64(x2 >> np.uint64(11)) * 1.1102230246251565e-16
        flat[i] = np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)
    rng_state[slot] = c + np.uint64(2 * out.size)


# ------------------------------------------------------------------------------------ MLP pieces
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


# ------------------------------------------------------------------------------------------ act
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


# ------------------------------------------------------------------------------ the loss pieces
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


# ------------------------------------------------------------------------------- the optimizer
@njit(cache=True)
def _adam_coeffs(like, lr, beta1, beta2, eps, step):
    """[beta1, 1 - beta1, beta2, 1 - beta2, step size, 1 / sqrt(bias correction 2), eps] in
    ``like``'s dtype (torch.optim.Adam; step is the 1-based count after the update)."""
    c = np.empty(7, dtype=like.dtype)
    c[0] = beta1
    c[1] = 1.0 - beta1
    c[2] = beta2
    c[3] = 1.0 - beta2
    c[4] = lr / (1.0 - beta1 ** step)
    c[5] = 1.0 / np.sqrt(1.0 - beta2 ** step)
    c[6] = eps
    return c


@njit(cache=True, error_model="numpy")
def _adam_range(param, grad, m, v, c, i0, i1):
    """Adam with the coefficients c of ``_adam_coeffs`` on elements i0:i1, in the arrays' dtype.

    The loop runs over local slices from 0 and ``error_model="numpy"`` drops the division's zero
    check: with either missing LLVM left the loop scalar (3x slower, measured).
    """
    b1, nb1, b2, nb2, step_size, inv_bc2s, ep = c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    p = param[i0:i1]
    gr = grad[i0:i1]
    mm = m[i0:i1]
    vv = v[i0:i1]
    for i in range(p.size):
        g = gr[i]
        mi = b1 * mm[i] + nb1 * g
        vi = b2 * vv[i] + nb2 * g * g
        mm[i] = mi
        vv[i] = vi
        p[i] -= step_size * mi / (np.sqrt(vi) * inv_bc2s + ep)


@njit(cache=True)
def _adam_update(param, grad, m, v, lr, beta1, beta2, eps, step):
    """torch.optim.Adam (no decay, bias-corrected): step is the 1-based count after this update.

    The arithmetic runs in the parameters' dtype (as torch's and the NumPy twin's): a float64 sqrt
    and division per float32 element kept the loop scalar and cost as much as a 256 x 256 matmul.
    """
    _adam_range(param, grad, m, v, _adam_coeffs(param, lr, beta1, beta2, eps, step), 0, param.size)


@njit(cache=True)
def _add_range(dst, src, i0, i1):
    """dst[i0:i1] += src[i0:i1] (local slices, so that LLVM vectorizes)."""
    d = dst[i0:i1]
    s = src[i0:i1]
    for i in range(d.size):
        d[i] += s[i]


@njit(cache=True)
def _polyak_range(target, source, keep, take, i0, i1):
    """target[i0:i1] <- keep target + take source (local slices, so that LLVM vectorizes)."""
    t = target[i0:i1]
    s = source[i0:i1]
    for i in range(t.size):
        t[i] = t[i] * keep + s[i] * take


@njit(cache=True)
def _polyak_update(target, source, tau):
    """target <- (1 - tau) target + tau source, element-wise (SB3's polyak_update), in the arrays'
    dtype."""
    c = np.empty(2, dtype=target.dtype)
    c[0] = 1.0 - tau
    c[1] = tau
    _polyak_range(target, source, c[0], c[1], 0, target.size)


@njit(cache=True)
def _split(n, t, parts):
    """[start, end) of part t of ``parts`` equal ranges of 0..n (starts on multiples of 16)."""
    step = ((n + parts - 1) // parts + 15) // 16 * 16
    return min(t * step, n), min((t + 1) * step, n)


# ------------------------------------------------------------------------------- the full step
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


# ------------------------------------------- pieces of model-based gradients (fastmbrl.agents._mb_grads)
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
