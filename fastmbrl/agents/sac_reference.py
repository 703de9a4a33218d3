"""Soft actor-critic (SAC) in plain NumPy, in one file: the math that ``fastmbrl.agents.SAC`` runs.

Read it top to bottom: random numbers, the policy head, the losses and their gradients, the
optimizer, one update, the update loop from a replay buffer, the mixed real/model minibatch update
(MBPO) and the vector-Jacobian products of model-based gradients. Each function is the NumPy twin
of the compiled (Numba) kernel of the same name and signature in ``fastmbrl.agents._sac_kernels``
and its parts: it computes the same result (up to rounding) and makes the same random draws, and
the tests hold the kernels to it. ``FASTMBRL_PUREPYTHON=1`` makes ``SAC`` run on these functions
(``fastmbrl.backend.kernels`` maps every ``fastmbrl.agents._sac_*_kernels`` module to this one).

The equations
-------------
Actor ``pi_phi``: an MLP ``s -> (mu, rho)`` (mean and raw log-std, ``D_act`` each); twin critics
``Q_1, Q_2`` on ``[s | a]`` with target copies ``Q'_1, Q'_2``; temperature
``alpha = exp(log_alpha)``; a minibatch ``(s, a, r, s', d)`` of ``B`` rows, ``d`` = terminated.

```text
policy (reparameterized tanh-Gaussian, eps ~ N(0, I) drawn outside the network):
    log_sigma = clip(rho, log_std_min, log_std_max)
    u         = mu + exp(log_sigma) * eps
    a         = scale * tanh(u) + bias
    log pi(a|s) = sum_j [ log N(eps_j; 0, 1) - log_sigma_j - log(1 - tanh(u_j)^2) ]
    with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2 u))       (stable for large |u|)

critic target (twin minimum over the target critics, entropy term, no gradient through y):
    a' ~ pi(.|s')
    y  = r + gamma (1 - d) ( min_i Q'_i(s', a') - alpha log pi(a'|s') )

critic loss (both critics, each on its own half-MSE):
    L_Q = sum_{i=1,2} 1/(2B) sum_b ( Q_i(s_b, a_b) - y_b )^2

actor loss (through the sampled action, with the critics after their step):
    a~ = scale * tanh(mu(s) + sigma(s) * eps) + bias
    L_pi = 1/B sum_b [ alpha log pi(a~_b|s_b) - min_i Q_i(s_b, a~_b) ]

temperature loss (log pi held fixed; target entropy H, -D_act by default):
    L_alpha = -log_alpha * 1/B sum_b ( log pi(a~_b|s_b) + H )

Adam (torch.optim.Adam, no weight decay; t is the 1-based step count), for each parameter p:
    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2
    p <- p - lr / (1 - beta1^t) * m / ( sqrt(v) / sqrt(1 - beta2^t) + adam_eps )

Polyak average of the target critics:
    theta' <- (1 - tau) theta' + tau theta
```

One update computes what Stable-Baselines3's ``SAC.train`` computes: the critic target and the
critic step; the actor step, its sample scored by the updated critics; the temperature step with
``log pi`` of that same sample (the actor before its step); then Polyak. The critic target and the
actor loss use ``alpha`` from before the temperature step. The constant ``sum_j log scale_j`` of
the affine map is left out of ``log pi``, as in Stable-Baselines3.

Conventions
-----------
- Networks are flat parameter vectors in the layout of ``fastmbrl.nn._flat`` (``W_l (E, D_l,
  D_l+1), b_l (E, D_l+1)`` layer after layer): the actor is a 1-member ensemble
  ``D_obs -> hidden -> 2 D_act``, the twin critics one 2-member ensemble
  ``D_obs + D_act -> hidden -> 1``. ``_mlp_forward`` returns every layer's activations and
  ``_mlp_backward`` writes the parameter gradient into a flat vector of the same layout
  (``fastmbrl.nn._mlp_reference``, imported below with the squashed-Gaussian head).
- ``act_code`` is the hidden activation: 1 ReLU, 2 tanh.
- Results are written in place into the ``..._out`` arrays, and parameters, Adam moments and
  generator counters are updated in place, as the kernels do.
"""
import numpy as np

from fastmbrl.nn._mlp_reference import (_act_size, _act_view, _backward_into,  # noqa: F401
                                        _forward_into, _layer, _mlp_backward, _mlp_forward,
                                        _softplus, _squash_head, _squash_head_vjp)
from fastmbrl.nn._rng_reference import GOLDEN as _GOLDEN
from fastmbrl.nn._rng_reference import _mix64

# ======================================================================== 1. random numbers
# A counter-based generator: draw n is splitmix64(key + n * golden). Its whole state is
# rng_state = [key, update counter, act counter] (uint64), so a twin reproduces every draw of the
# kernel from the same state. Minibatch indices and the update's noise share the update counter;
# the noise of act() comes from the act counter under the key xor golden.


def _draws(key, start, n):
    """Draws ``start .. start + n - 1`` (uint64 (n,)) of the generator with ``key``."""
    with np.errstate(over="ignore"):
        return _mix64(key + (start + np.arange(n, dtype=np.uint64)) * _GOLDEN)


def _sac_sample_indices(rng_state, n_rows, out):
    """Fill ``out`` with row indices uniform in [0, n_rows) from the update counter.

    Index = high 32 bits of a draw times ``n_rows``, shifted down by 32 (multiply-shift); the
    update counter advances by ``out.size``.
    """
    x = _draws(rng_state[0], rng_state[1], out.size)
    out[...] = (((x >> np.uint64(32)) * np.uint64(n_rows)) >> np.uint64(32)).astype(np.int64)
    rng_state[1] = rng_state[1] + np.uint64(out.size)


def _sac_draw_normals(rng_state, slot, out):
    """Fill ``out`` (any shape, C order) with standard normals by Box-Muller (cosine branch).

    ``slot`` 1 draws from the update counter, 2 from the act counter (key xor golden); the
    counter advances by 2 per normal. Uniforms are the top 53 bits of a draw times 2^-53, the
    first one taken as ``1 - u`` so that its log is finite.
    """
    key = rng_state[0] ^ _GOLDEN if slot == 2 else rng_state[0]
    x = _draws(key, rng_state[slot], 2 * out.size)
    u1 = 1.0 - (x[0::2] >> np.uint64(11)).astype(np.float64) * 1.1102230246251565e-16
    u2 = (x[1::2] >> np.uint64(11)).astype(np.float64) * 1.1102230246251565e-16
    out[...] = (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).reshape(out.shape)
    rng_state[slot] = rng_state[slot] + np.uint64(2 * out.size)


# ======================================================================== 2. the policy head
# The actor's output rows are [mu | rho]; _squash_head (fastmbrl.nn._mlp_reference) turns them
# and standard normals eps into a = scale tanh(u) + bias and log pi(a|s), as in the equations.


def _sac_act(actor, dims_a, act_code, obs, deterministic, log_std_min, log_std_max, scale, bias,
             rng_state, a_out):
    """Actions ``a_out`` (R, D_act) for ``obs`` (R, D_obs).

    ``scale tanh(mu) + bias`` when ``deterministic``, else a squashed-Gaussian sample with noise
    from the act counter of ``rng_state``.
    """
    out = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)[-1]
    A = a_out.shape[1]
    if deterministic:
        a_out[...] = scale * np.tanh(out[:, :A]) + bias
    else:
        eps = np.empty(a_out.shape, dtype=obs.dtype)
        _sac_draw_normals(rng_state, 2, eps)
        _squash_head(out, eps, log_std_min, log_std_max, scale, bias, a_out,
                     np.empty(obs.shape[0], dtype=obs.dtype))


def _actor_sample(actor, dims_a, act_code, obs, eps, log_std_min, log_std_max, scale, bias, a_out,
                  logp_out):
    """Squashed-Gaussian actions ``a_out`` (R, D_act) and ``log pi`` ``logp_out`` (R,) for
    ``obs`` (R, D_obs) with the given standard normals ``eps`` (R, D_act)."""
    out = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)[-1]
    _squash_head(out, eps, log_std_min, log_std_max, scale, bias, a_out, logp_out)


# ======================================================================== 3. losses and gradients


def _concat_obs_act(obs, act):
    """The critics' input ``[obs | act]`` (R, D_obs + D_act)."""
    return np.concatenate([obs, act], axis=1)


def _critic_target_core(target, dims_c, act_code, next_obs, a_next, logp_next, reward, terminated,
                        alpha, gamma, y_out):
    """``y_out`` (B,) = r + gamma (1 - d) (min_i Q'_i(s', a') - alpha log pi(a'|s')), given the
    next actions ``a_next`` and their ``logp_next``."""
    z = _concat_obs_act(next_obs, a_next)
    q = np.minimum(_mlp_forward(target, dims_c, 2, 0, act_code, z)[-1][:, 0],
                   _mlp_forward(target, dims_c, 2, 1, act_code, z)[-1][:, 0])
    y_out[...] = reward + gamma * (1.0 - terminated) * (q - alpha * logp_next)


def _sac_critic_target(actor, dims_a, target, dims_c, act_code, next_obs, reward, terminated,
                       eps_next, alpha, gamma, log_std_min, log_std_max, scale, bias, y_out):
    """The critic target ``y_out`` (B,), sampling ``a' ~ pi(.|s')`` with the noise ``eps_next``
    (B, D_act)."""
    out = _mlp_forward(actor, dims_a, 1, 0, act_code, next_obs)[-1]
    a_next = np.empty(eps_next.shape, dtype=next_obs.dtype)
    logp = np.empty(next_obs.shape[0], dtype=next_obs.dtype)
    _squash_head(out, eps_next, log_std_min, log_std_max, scale, bias, a_next, logp)
    _critic_target_core(target, dims_c, act_code, next_obs, a_next, logp, reward, terminated, alpha,
                        gamma, y_out)


def _sac_critic_loss_grad(critic, dims_c, act_code, obs, act, y, grad_out):
    """The critic loss ``L_Q`` and its gradient.

    Parameters
    ----------
    critic : ndarray
        Flat parameters of the twin critics.
    obs, act : ndarray
        (B, D_obs) and (B, D_act): the minibatch's states and actions.
    y : ndarray
        (B,) critic targets (held fixed).
    grad_out : ndarray
        Written: the gradient of ``L_Q`` in the critics' layout.

    Returns
    -------
    loss : float
        ``L_Q``, accumulated in float64.
    mean_q : float
        Mean of ``Q_i(s_b, a_b)`` over both critics and the minibatch.
    """
    z = _concat_obs_act(obs, act)
    B = z.shape[0]
    loss, qsum = 0.0, 0.0
    for e in range(2):
        acts = _mlp_forward(critic, dims_c, 2, e, act_code, z)
        q = acts[-1][:, 0]
        diff = q.astype(np.float64) - y
        loss += 0.5 * np.mean(diff * diff)
        qsum += q.sum(dtype=np.float64)
        dq = (diff / B).astype(obs.dtype)[:, None]        # dL_Q / dQ_i
        _mlp_backward(critic, dims_c, 2, e, act_code, acts, dq, grad_out, True, dims_c[0])
    return loss, qsum / (2 * B)


def _actor_loss_grad_core(actor, dims_a, critic, dims_c, act_code, acts, obs, eps, alpha,
                          log_std_min, log_std_max, scale, bias, grad_out, logp_out):
    """``_sac_actor_loss_grad`` from the actor's activations ``acts`` on ``obs``."""
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
    # back through min_i Q_i to the action (the critics' parameters get no gradient) ...
    dq0 = np.where(pick1, 0.0, -1.0 / B).astype(obs.dtype)[:, None]
    dq1 = np.where(pick1, -1.0 / B, 0.0).astype(obs.dtype)[:, None]
    da = (_mlp_backward(critic, dims_c, 2, 0, act_code, c0, dq0, grad_out, False, O)
          + _mlp_backward(critic, dims_c, 2, 1, act_code, c1, dq1, grad_out, False, O))
    # ... then through the squashed sample and alpha log pi / B to the actor's output and weights
    dout = np.empty((B, 2 * A), dtype=obs.dtype)
    _squash_head_vjp(out, eps, da, np.full(B, alpha / B), log_std_min, log_std_max, scale, dout)
    _mlp_backward(actor, dims_a, 1, 0, act_code, acts, dout, grad_out, True, dims_a[0])
    return float(loss)


def _sac_actor_loss_grad(actor, dims_a, critic, dims_c, act_code, obs, eps, alpha, log_std_min,
                         log_std_max, scale, bias, grad_out, logp_out):
    """The actor loss ``L_pi`` and its gradient through the reparameterized sample.

    Parameters
    ----------
    obs, eps : ndarray
        (B, D_obs) states and (B, D_act) standard normals of the sample ``a~``.
    alpha : float
        The temperature.
    grad_out : ndarray
        Written: the gradient of ``L_pi`` in the actor's layout.
    logp_out : ndarray
        Written: ``log pi(a~_b|s_b)`` (B,), for the temperature loss.

    Returns
    -------
    float
        ``L_pi``.
    """
    acts = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)
    return _actor_loss_grad_core(actor, dims_a, critic, dims_c, act_code, acts, obs, eps, alpha,
                                 log_std_min, log_std_max, scale, bias, grad_out, logp_out)


def _sac_temperature_loss_grad(log_alpha, logp, target_entropy):
    """The temperature loss ``L_alpha`` and its derivative in ``log_alpha``.

    Returns
    -------
    loss, grad : float
        ``log_alpha * g`` and ``g = -mean(logp + target_entropy)``.
    """
    g = -np.mean(logp.astype(np.float64) + target_entropy)
    return log_alpha * g, g


# ======================================================================== 4. the optimizer


def _adam_update(param, grad, m, v, lr, beta1, beta2, eps, step):
    """One Adam step on ``param`` in place (torch.optim.Adam's formula, no weight decay); ``step``
    is the 1-based count after this update."""
    m[...] = beta1 * m + (1.0 - beta1) * grad
    v[...] = beta2 * v + (1.0 - beta2) * grad * grad
    step_size = lr / (1.0 - beta1 ** step)
    param -= (step_size * m / (np.sqrt(v) / np.sqrt(1.0 - beta2 ** step) + eps)).astype(param.dtype)


def _adam_coeffs(like, lr, beta1, beta2, eps, step):
    """Adam's coefficients in ``like``'s dtype: [beta1, 1 - beta1, beta2, 1 - beta2,
    lr / (1 - beta1^step), 1 / sqrt(1 - beta2^step), eps]."""
    return np.array([beta1, 1.0 - beta1, beta2, 1.0 - beta2, lr / (1.0 - beta1 ** step),
                     1.0 / np.sqrt(1.0 - beta2 ** step), eps], dtype=like.dtype)


def _adam_range(param, grad, m, v, c, i0, i1):
    """Adam on the elements ``i0:i1`` only, with the coefficients ``c`` of ``_adam_coeffs``."""
    b1, nb1, b2, nb2, step_size, inv_bc2s, ep = c
    g = grad[i0:i1]
    m[i0:i1] = b1 * m[i0:i1] + nb1 * g
    v[i0:i1] = b2 * v[i0:i1] + nb2 * g * g
    param[i0:i1] -= step_size * m[i0:i1] / (np.sqrt(v[i0:i1]) * inv_bc2s + ep)


def _polyak_update(target, source, tau):
    """``target <- (1 - tau) target + tau source`` in place."""
    target[...] = target * (1.0 - tau) + source * tau


# ======================================================================== 5. one update


def _sac_workspace(actor, critic, dims_a, dims_c, B):
    """The kernel's scratch arrays for minibatches of ``B`` rows (same shapes and dtypes; the
    functions here allocate their own and ignore them)."""
    wmax = max([1] + [int(d) for d in dims_c[1:-1]] + [int(d) for d in dims_a[1:-1]])
    return (np.empty((2, _act_size(dims_a, B)), actor.dtype),
            np.empty((2, _act_size(dims_c, B)), actor.dtype),
            np.empty((2, 2 * B * wmax), actor.dtype), np.empty_like(critic),
            np.empty((2, actor.size), actor.dtype))


def _sac_update(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v, critic_m,
                critic_v, alpha_state, steps, hp, scale, bias, obs, act, reward, next_obs,
                terminated, eps_next, eps_cur, metrics_out):
    """One SAC gradient step on a minibatch: critics, actor, temperature, Polyak, in place.

    Parameters
    ----------
    actor, critic, target : ndarray
        Flat parameters of the actor, the twin critics and their targets.
    actor_m, actor_v, critic_m, critic_v : ndarray
        Adam moments of the actor and of the critics.
    alpha_state : ndarray
        (3,) = [log_alpha, its Adam m, its Adam v].
    steps : ndarray
        int64 (3,): Adam step counts of the critics, the actor and the temperature.
    hp : ndarray
        float64 (11,) = [gamma, tau, lr_actor, lr_critic, lr_alpha, beta1, beta2, adam_eps,
        log_std_min, log_std_max, target_entropy].
    scale, bias : ndarray
        (D_act,): actions are ``scale tanh(u) + bias``.
    obs, act, reward, next_obs, terminated : ndarray
        The minibatch (B rows).
    eps_next, eps_cur : ndarray
        (B, D_act) standard normals of ``a'`` (critic target) and of ``a~`` (actor loss).
    metrics_out : ndarray
        Written: (6,) = [critic loss, actor loss, temperature loss, alpha used, entropy estimate
        -mean log pi, mean Q].
    """
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
    # ---- temperature step, with log pi of the actor before its step
    tloss, tg = _sac_temperature_loss_grad(float(alpha_state[0]), logp, tent)
    steps[2] += 1
    _adam_update(alpha_state[0:1], np.array([tg], dtype=alpha_state.dtype), alpha_state[1:2],
                 alpha_state[2:3], lr_t, b1, b2, aeps, steps[2])
    # ---- target critics
    _polyak_update(target, critic, tau)
    metrics_out[...] = (closs, aloss, tloss, alpha, -np.mean(logp, dtype=np.float64), mean_q)


# ======================================================================== 6. updates from a buffer


def _sac_update_from(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v, critic_m,
                     critic_v, alpha_state, steps, hp, scale, bias, buf_obs, buf_act, buf_reward,
                     buf_next_obs, buf_terminated, n_rows, batch_size, rng_state, metrics_out,
                     work):
    """``metrics_out.shape[0]`` updates, each on ``batch_size`` rows drawn uniformly with
    replacement from the first ``n_rows`` rows of the buffer arrays.

    Per update, from the update counter of ``rng_state``: the row indices, then the
    2 ``batch_size`` D_act normals (``eps_next`` first). ``metrics_out`` (n_updates, 6) as
    ``_sac_update``'s; ``work`` (the kernel's scratch) is not used.
    """
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


# ======================================================================== 7. mixed real/model rows


def _sac_update_from_mixed(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v,
                           critic_m, critic_v, alpha_state, steps, hp, scale, bias, r_obs, r_act,
                           r_reward, r_next_obs, r_terminated, n_r_rows, m_obs, m_act, m_reward,
                           m_next_obs, m_terminated, n_m_rows, n_real, batch_size, rng_state,
                           metrics_out, work):
    """``_sac_update_from`` on minibatches mixing two buffers (MBPO: real and model rows).

    Each minibatch is ``n_real`` rows of the first buffer (``r_*``, ``n_r_rows`` filled) followed
    by ``batch_size - n_real`` rows of the second (``m_*``, ``n_m_rows`` filled), drawn uniformly
    with replacement. Per update, from the update counter: the real indices, the model indices,
    then the normals. ``work`` is not used.
    """
    A = r_act.shape[1]
    idx_r = np.empty(n_real, dtype=np.int64)
    idx_m = np.empty(batch_size - n_real, dtype=np.int64)
    noise = np.empty((2, batch_size, A), dtype=r_obs.dtype)
    for u in range(metrics_out.shape[0]):
        _sac_sample_indices(rng_state, n_r_rows, idx_r)
        _sac_sample_indices(rng_state, n_m_rows, idx_m)
        _sac_draw_normals(rng_state, 1, noise)
        parts = [np.concatenate([a[idx_r], b[idx_m]]) for a, b in (
            (r_obs, m_obs), (r_act, m_act), (r_reward, m_reward), (r_next_obs, m_next_obs),
            (r_terminated, m_terminated))]
        _sac_update(actor, critic, target, dims_a, dims_c, act_code, actor_m, actor_v, critic_m,
                    critic_v, alpha_state, steps, hp, scale, bias, *parts, noise[0], noise[1],
                    metrics_out[u])


# ======================================================================== 8. model-based VJPs
# Model-based actor gradients (fastmbrl.agents._mb_grads) backpropagate through rollouts of the
# learned model; these are the two SAC pieces of that chain: the actor's sample and the critics'
# minimum, each with the gradient of a weighted sum of its outputs.


def _actor_vjp(actor, dims_a, act_code, obs, eps, d_act, d_logp, log_std_min, log_std_max, scale,
               bias, grad_out, d_obs_out):
    """Vector-Jacobian product of ``(a, log pi) = _actor_sample(obs, eps)`` with ``eps`` fixed.

    ``d_act`` (R, D_act) and ``d_logp`` (R,) are the cotangents of the action and of ``log pi``;
    writes the actor's parameter gradient ``grad_out`` (actor layout) and ``d_obs_out``
    (R, D_obs). The actor's forward pass is recomputed from ``obs``.
    """
    acts = _mlp_forward(actor, dims_a, 1, 0, act_code, obs)
    R, A = eps.shape
    dout = np.empty((R, 2 * A), dtype=obs.dtype)
    _squash_head_vjp(acts[-1], eps, d_act, d_logp, log_std_min, log_std_max, scale, dout)
    d_obs_out[...] = _mlp_backward(actor, dims_a, 1, 0, act_code, acts, dout, grad_out, True, 0)


def _critic_min_vjp(critic, dims_c, act_code, obs, act, w, qmin_out, d_obs_out, d_act_out):
    """``qmin_out`` (R,) = min_i Q_i(obs, act) and the input gradient of ``sum_r w_r qmin_r``:
    ``d_obs_out`` (R, D_obs), ``d_act_out`` (R, D_act). Ties send the gradient to the first
    critic (torch.min)."""
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
