"""Model-based critic targets (MVE) and actor gradients through the model (SVG(H)) for SAC.

Course notes 5.3 and 5.4. Both are Python drivers looping over the horizon (h, n <= ~10) around
compiled pieces, one compiled call per step and pass:

- the SAC kernels ``_sac_kernels._actor_sample`` (actor forward + squashed sample),
  ``_actor_vjp`` (its backward from external cotangents of the action and of log pi),
  ``_critic_min_vjp`` (min of the twin critics and its input gradient), ``_sac_critic_target``,
  ``_sac_critic_loss_grad``, ``_sac_actor_loss_grad``, ``_adam_update``, ``_polyak_update``;
- the model step with its tape and its VJP (``fastmbrl.models.vjp``), plus the reward function's
  gradient (``ModelEnv.reward_grad_fn``) or the learned reward head's.

``FASTMBRL_PUREPYTHON=1`` runs all of them on their NumPy twins (the agent's and the model's
kernel modules are picked by ``fastmbrl.backend``).

Soft returns (the entropy terms, as SAC's soft Bellman equation): with c_t = gamma^t alive_t
(alive_0 = 1, a terminated row stops accumulating and does not bootstrap),

    J_actor(s_0) = sum_{t<h} c_t (r_t - alpha log pi(a_t|s_t)) + c_h (min_j Q_j(s_h, a_h)
                   - alpha log pi(a_h|s_h)),
    y_MVE(s, a, r, s') = r + sum_{1<=t<n} c_t (r_t - alpha log pi(a_t|s_t))
                   + c_n (min_j Q'_j(s_n, a_n) - alpha log pi(a_n|s_n)),

with s_1 = s', alive_1 = 1 - terminated. h = 0 is SAC's actor loss ``mean(alpha log pi - min Q)``
and n = 1 SAC's TD target, exactly.
"""
import logging

import numpy as np

from fastmbrl.backend import kernels
from fastmbrl.config import MBPOConfig

# the compiled kernels or their NumPy twins (FASTMBRL_PUREPYTHON=1), chosen by fastmbrl.backend
_k = kernels("fastmbrl.agents._sac_kernels")

log = logging.getLogger("fastmbrl.agents.model_based")

__all__ = [
    "ModelNoise",
    "draw_noise",
    "model_based_update",
    "mve_critic_target",
    "svg_actor_loss_grad",
    "taped_rollout",
    "rollout_backward",
    "TapedRollout",
]


def _hp(agent):
    lo, hi = agent.log_std_bounds
    return lo, hi


def _sample(agent, actor, obs, eps):
    n = obs.shape[0]
    a = np.empty((n, agent.act_dim), agent.dtype)
    logp = np.empty(n, agent.dtype)
    lo, hi = _hp(agent)
    _k._actor_sample(actor, agent.dims_actor, agent.activation_code, obs, eps, lo, hi, agent.scale,
                     agent.bias, a, logp)
    return a, logp


class ModelNoise:
    """The fixed draws of one model-based update.

    Attributes
    ----------
    act : float array (T_a, B, D_act)
        Standard normals of the policy's samples (actor: a_0..a_h; critic: a_1..a_n).
    model : float array (T_m, B, D_out)
        Standard normals of the model's next-state (and learned reward) samples.
    members : int64 array (T_m, B)
        The ensemble member of each row at each step.
    """

    def __init__(self, act, model, members):
        self.act, self.model, self.members = act, model, members


def draw_noise(agent, arrays, B, n_act, n_model, out_dim):
    """Draws of a ModelNoise from the agent's update stream (stream 1 of ``agent.rng_state``, so
    checkpoints carry them): act normals, then model normals, then members (uniform elites)."""
    act = np.empty((n_act, B, agent.act_dim), agent.dtype)
    _k._sac_draw_normals(agent.rng_state, 1, act)
    model = np.empty((n_model, B, out_dim), agent.dtype)
    if model.size:
        _k._sac_draw_normals(agent.rng_state, 1, model)
    elites = np.asarray(arrays.members, np.int64)
    idx = np.empty(n_model * B, np.int64)
    if idx.size:
        _k._sac_sample_indices(agent.rng_state, elites.size, idx)
    return ModelNoise(act, model, elites[idx].reshape(n_model, B))


def _model_arrays(menv):
    """The ModelArrays ``menv`` steps with now (its model's current weights)."""
    return menv.kernel_arrays()


def _first_fallback(menv):
    """True the first time the learned reward head stands in for ``reward_grad_fn`` on ``menv``
    (once per ModelEnv, shared with ``ModelEnv.step_vjp``'s own warning)."""
    claim = getattr(menv, "claim_fallback_warning", None)
    return bool(claim()) if claim is not None else False


def _reward_parts(menv, arrays):
    """(reward_fn, grad_fn) used by the model steps; grad_fn None = the learned head's gradient."""
    if menv.reward_fn is None:
        return None, None
    grad = menv.reward_grad_fn
    if grad is None and not arrays.has_reward:
        raise ValueError("reward_grad_fn: actor gradients through the model need the gradient of "
                         "reward_fn or a learned reward head; got neither")
    if grad is None and _first_fallback(menv):
        log.warning("reward_grad_fn: none for reward_fn; the actor's gradient goes through the "
                    "model's learned reward head instead")
    return menv.reward_fn, grad


def _model_step(menv, arrays, obs, act, noise, members, reward_fn, taped):
    from fastmbrl.models.arrays import step_from_arrays
    from fastmbrl.models.vjp import step_tape_from_arrays

    if taped:
        nxt, learned, tape = step_tape_from_arrays(arrays, obs, act, members, noise)
    else:
        nxt, learned = step_from_arrays(arrays, obs, act, members, noise)
        tape = None
    n = obs.shape[0]
    nxt = nxt.astype(obs.dtype, copy=False)
    if reward_fn is None:
        rew = learned.astype(obs.dtype, copy=False)
    else:
        rew = np.asarray(reward_fn(obs, act, nxt), dtype=obs.dtype).reshape(n)
    if menv.termination_fn is None:
        term = np.zeros(n, bool)
    else:
        term = np.asarray(menv.termination_fn(obs, act, nxt)).astype(bool).reshape(n)
    return nxt, rew, term, tape


def svg_actor_loss_grad(agent, menv, obs, horizon, noise, alpha, grad_out, critic=None,
                        actor=None):
    """SVG(H) actor loss ``-mean_b J_actor(s_0)`` (module docstring) and its exact gradient with
    respect to the actor's parameters, by backpropagation through the h model steps.

    Parameters
    ----------
    agent : SAC
    menv : ModelEnv
    obs : float array (B, D_obs)
        Real start states s_0.
    horizon : int
        h >= 0 (0: SAC's actor loss).
    noise : ModelNoise
        act (h+1, B, D_act), model (h, B, D_out), members (h, B); fixed (reparameterization).
    alpha : float
    grad_out : float array like ``agent.actor``
        Receives the gradient (overwritten).
    critic, actor : flat arrays, optional
        Parameters to use instead of ``agent.critic`` / ``agent.actor`` (finite differences).

    Returns
    -------
    loss : float
    logp0 : (B,) log pi(a_0|s_0) (for the temperature step)

    Notes
    -----
    Forward: per step the actor's sample (keeping s_t, a_t), the taped model step, the reward;
    backward from the critics' input gradient at (s_h, a_h) through every step: the model's VJP
    gives (d s_t, d a_t), the actor's VJP adds its parameter gradient and d s_t. Memory: one model
    tape and s_t, a_t per step (linear in h); the actor's forward pass is recomputed in its VJP.
    """
    critic = agent.critic if critic is None else critic
    rec = taped_rollout(agent, menv, obs, horizon, noise, alpha, actor=actor)
    B = obs.shape[0]
    dt = agent.dtype
    c_h = rec.c_h
    qmin = np.empty(B, dt)
    d_s = np.empty((B, agent.obs_dim), dt)
    d_a = np.empty((B, agent.act_dim), dt)
    _k._critic_min_vjp(critic, agent.dims_critic, agent.activation_code, rec.s_h, rec.a_h,
                       (-c_h / B).astype(dt), qmin, d_s, d_a)
    total = rec.total + c_h * (np.where(c_h > 0, qmin, 0.0) - alpha * rec.logp_h)
    rollout_backward(agent, rec, d_s, d_a, alpha, grad_out, actor=actor)
    logp0 = rec.logps[0] if horizon > 0 else rec.logp_h
    return float(-np.mean(total)), logp0


class TapedRollout:
    """A reparameterized model rollout of the policy, kept for :func:`rollout_backward`.

    Attributes
    ----------
    states, actions, nexts : lists of (B, D) arrays s_t, a_t, s_t+1, one per step t < h
    tapes : list of the model steps' tapes
    weights : list of (B,) c_t = gamma^t alive_t
    rewards, logps : lists of (B,) r_t and log pi(a_t|s_t), t < h
    s_h, a_h, logp_h, c_h : the final state, its action, log pi and weight
    total : (B,) float64 ``sum_{t<h} c_t (r_t - alpha log pi_t)`` (live rows' rewards only)
    noise : the ModelNoise it was made with
    """


def taped_rollout(agent, menv, obs, horizon, noise, alpha, actor=None):
    """h = ``horizon`` reparameterized steps of the policy through the model from ``obs`` (B,
    D_obs), taped: per step the actor's sample, the model step (with its tape) and the reward;
    then the actor's sample at s_h. ``noise``: act (h+1, B, D_act), model (h, B, D_out),
    members (h, B). Returns a :class:`TapedRollout`."""
    actor = agent.actor if actor is None else actor
    arrays = _model_arrays(menv) if horizon > 0 else None
    reward_fn, grad_fn = _reward_parts(menv, arrays) if horizon > 0 else (None, None)
    B = obs.shape[0]
    rec = TapedRollout()
    rec.arrays, rec.reward_fn, rec.grad_fn, rec.noise = arrays, reward_fn, grad_fn, noise
    rec.states, rec.actions, rec.tapes, rec.nexts = [], [], [], []
    rec.weights, rec.rewards, rec.logps = [], [], []
    alive = np.ones(B, agent.dtype)
    total = np.zeros(B, np.float64)
    s = obs
    for t in range(horizon):
        a, logp = _sample(agent, actor, s, noise.act[t])
        nxt, rew, term, tape = _model_step(menv, arrays, s, a, noise.model[t], noise.members[t],
                                           reward_fn, True)
        c = (agent.gamma ** t) * alive
        total += c * (np.where(alive > 0, rew, 0.0) - alpha * logp)
        rec.states.append(s)
        rec.actions.append(a)
        rec.tapes.append(tape)
        rec.nexts.append(nxt)
        rec.weights.append(c)
        rec.rewards.append(rew)
        rec.logps.append(logp)
        alive = alive * (~term)
        s = nxt
    rec.s_h = s
    rec.a_h, rec.logp_h = _sample(agent, actor, s, noise.act[horizon])
    rec.c_h = ((agent.gamma ** horizon) * alive).astype(agent.dtype)
    rec.total = total
    return rec


def rollout_backward(agent, rec, d_s, d_a, alpha, grad_out, actor=None):
    """Gradient of the loss ``-mean_b J(s_0)`` with respect to the actor's parameters into
    ``grad_out`` (overwritten), for ``J(s_0) = sum_{t<h} c_t (r_t - alpha log pi_t) + c_h (V(s_h,
    a_h) - alpha log pi_h)`` along the taped rollout ``rec``, given the loss's cotangents ``d_s``,
    ``d_a`` at (s_h, a_h) from the terminal value V. Backward through every step: the model's VJP
    gives (d s_t, d a_t), the actor's VJP (its forward pass recomputed) adds its parameter
    gradient and d s_t."""
    from fastmbrl.models.vjp import vjp_from_tape

    actor = agent.actor if actor is None else actor
    lo, hi = _hp(agent)
    dt = agent.dtype
    B = rec.s_h.shape[0]
    grad_out[...] = 0.0
    g = np.empty_like(grad_out)
    d_obs_pi = np.empty((B, agent.obs_dim), dt)
    _k._actor_vjp(actor, agent.dims_actor, agent.activation_code, rec.s_h,
                  rec.noise.act[len(rec.states)], d_a, (alpha * rec.c_h / B).astype(dt), lo, hi,
                  agent.scale, agent.bias, g, d_obs_pi)
    grad_out += g
    d_s = d_s + d_obs_pi
    for t in range(len(rec.states) - 1, -1, -1):
        w = (-rec.weights[t] / B).astype(dt)              # cotangent of r_t in the loss
        st, at = rec.states[t], rec.actions[t]
        if rec.reward_fn is None or rec.grad_fn is None:
            d_st, d_at = vjp_from_tape(rec.arrays, rec.tapes[t], d_s, w)
        else:
            r_obs, r_act, r_next = (np.asarray(x, dt) for x in rec.grad_fn(st, at, rec.nexts[t]))
            d_st, d_at = vjp_from_tape(rec.arrays, rec.tapes[t], d_s + w[:, None] * r_next, None)
            d_st = d_st + w[:, None] * r_obs
            d_at = d_at + w[:, None] * r_act
        _k._actor_vjp(actor, agent.dims_actor, agent.activation_code, st, rec.noise.act[t],
                      np.ascontiguousarray(d_at, dt), (alpha * rec.weights[t] / B).astype(dt), lo,
                      hi, agent.scale, agent.bias, g, d_obs_pi)
        grad_out += g
        d_s = d_st + d_obs_pi


def mve_critic_target(agent, menv, reward, next_obs, terminated, horizon, noise, alpha,
                      actor=None, target=None, imagined=False):
    """Value-expansion TD targets y_MVE (module docstring), (B,).

    ``noise``: act (n, B, D_act) for a_1..a_n, model (n-1, B, D_out), members (n-1, B). n = 1 is
    ``_sac_critic_target`` itself (SAC's target, bit for bit). Computed by the soft-value recursion
    ``W_n = min Q'(s_n, a_n) - alpha log pi_n``, ``W_t = r_t - alpha log pi_t + gamma (1 - d_t)
    W_{t+1}``, ``y = r + gamma (1 - terminated) W_1`` (d_t: the model's termination at step t;
    ``np.where`` masks, so a diverging model cannot leak NaNs into terminated rows).

    With ``imagined`` (MVE's TD-k trick) also returns ``(obs_t, act_t, y_t)`` for the imagined
    steps 1 <= t < n of rows not terminated before t, stacked: obs (m, D_obs), act (m, D_act) and
    their own shorter targets ``y_t = r_t + gamma (1 - d_t) W_{t+1}`` (m,).
    """
    actor = agent.actor if actor is None else actor
    target = agent.critic_target if target is None else target
    lo, hi = _hp(agent)
    dt = agent.dtype
    B = next_obs.shape[0]
    y = np.empty(B, dt)
    if horizon == 1:
        _k._sac_critic_target(actor, agent.dims_actor, target, agent.dims_critic,
                              agent.activation_code, next_obs, reward, terminated, noise.act[0],
                              alpha, agent.gamma, lo, hi, agent.scale, agent.bias, y)
        if imagined:
            return y, (next_obs[:0], np.empty((0, agent.act_dim), dt), y[:0])
        return y
    arrays = _model_arrays(menv)
    reward_fn = menv.reward_fn
    gamma = agent.gamma
    alive = ~np.asarray(terminated, bool)
    s = next_obs
    steps = []                                   # (s_t, a_t, r_t, logp_t, d_t, alive_t)
    for t in range(1, horizon):
        a, logp = _sample(agent, actor, s, noise.act[t - 1])
        nxt, rew, term, _ = _model_step(menv, arrays, s, a, noise.model[t - 1],
                                        noise.members[t - 1], reward_fn, False)
        steps.append((s, a, rew, logp, term, alive))
        alive = alive & ~term
        s = nxt
    v = np.empty(B, dt)
    _k._sac_critic_target(actor, agent.dims_actor, target, agent.dims_critic,
                          agent.activation_code, s, np.zeros(B, dt), np.zeros(B, bool),
                          noise.act[horizon - 1], alpha, 1.0, lo, hi, agent.scale, agent.bias, v)
    w = v.astype(np.float64)
    extra = []
    for s_t, a_t, r_t, logp_t, d_t, alive_t in reversed(steps):
        y_t = r_t + gamma * np.where(d_t, 0.0, w)
        if imagined:
            extra.append((s_t[alive_t], a_t[alive_t], y_t[alive_t]))
        w = y_t - alpha * logp_t.astype(np.float64)
    y[...] = reward + gamma * np.where(np.asarray(terminated, bool), 0.0, w)
    if not imagined:
        return y
    obs_i, act_i, y_i = (np.ascontiguousarray(np.concatenate(x).astype(dt)) for x in zip(*extra))
    return y, (obs_i, act_i, y_i)


def clip_global_norm(grad, max_norm):
    """Scale ``grad`` in place to global L2 norm at most ``max_norm``; returns the norm before."""
    norm = float(np.sqrt(np.dot(grad.astype(np.float64), grad.astype(np.float64))))
    if np.isfinite(norm) and norm > max_norm:
        grad *= grad.dtype.type(max_norm / norm)
    return norm


def model_based_update(agent, menv, obs, act, reward, next_obs, terminated, *,
                       critic_horizon=MBPOConfig.critic_horizon,
                       actor_horizon=MBPOConfig.actor_horizon, actor_grad_clip=None,
                       td_k=MBPOConfig.td_k, critic_noise=None, actor_noise=None):
    """One SAC update (critic, actor, temperature, Polyak, in SB3's order as ``SAC.update``) with
    the MVE critic target of horizon n = ``critic_horizon`` and the SVG(H) actor gradient of
    horizon h = ``actor_horizon``, global-norm clipped at ``actor_grad_clip`` (None: no clip).
    With ``td_k`` (and n > 1) the critic is also fitted at the imagined states s_1..s_{n-1} to their
    own shorter targets (MVE's TD-k trick): one loss, the mean over real and imagined rows.

    Arrays as in ``SAC.update``'s batch (agent dtype, C-contiguous, terminated bool). Noise not
    given is drawn from the agent's update stream: critic (n act, n-1 model steps), then actor
    (h+1 act, h model steps). Returns the metrics dict of ``SAC.update``.
    """
    from fastmbrl.agents.sac import METRICS

    B = obs.shape[0]
    out_dim = menv.out_dim if menv is not None else 0
    arrays = _model_arrays(menv) if menv is not None else None
    if critic_noise is None:
        critic_noise = draw_noise(agent, arrays, B, critic_horizon, critic_horizon - 1, out_dim)
    if actor_noise is None:
        actor_noise = draw_noise(agent, arrays, B, actor_horizon + 1, actor_horizon, out_dim)
    if critic_horizon == 1 and actor_horizon == 0 and actor_grad_clip is None and not td_k:
        # both switches off: SAC's own update kernel (bit for bit SAC.update)
        metrics = np.zeros(6, np.float64)
        with agent.kernel_context():
            _k._sac_update(*agent.kernel_args(), obs, act, reward, next_obs, terminated,
                           np.ascontiguousarray(critic_noise.act[0]),
                           np.ascontiguousarray(actor_noise.act[0]), metrics)
        return {k: float(v) for k, v in zip(METRICS, metrics)}
    hp = agent.hyperparameters
    lr_a, lr_c, lr_t = hp["lr_actor"], hp["lr_critic"], hp["lr_alpha"]
    b1, b2, aeps, tent = hp["beta1"], hp["beta2"], hp["adam_eps"], hp["target_entropy"]
    alpha = float(np.exp(np.float64(agent.alpha_state[0])))
    # ---- critic step
    if td_k and critic_horizon > 1:
        y, (obs_i, act_i, y_i) = mve_critic_target(agent, menv, reward, next_obs, terminated,
                                                   critic_horizon, critic_noise, alpha,
                                                   imagined=True)
        obs, act = np.concatenate([obs, obs_i]), np.concatenate([act, act_i.astype(act.dtype)])
        y = np.concatenate([y, y_i])
        obs_actor = obs[:B]
    else:
        y = mve_critic_target(agent, menv, reward, next_obs, terminated, critic_horizon,
                              critic_noise, alpha)
        obs_actor = obs
    gc = np.empty_like(agent.critic)
    closs, mean_q = _k._sac_critic_loss_grad(agent.critic, agent.dims_critic,
                                             agent.activation_code, obs, act, y, gc)
    agent.steps[0] += 1
    _k._adam_update(agent.critic, gc, agent.critic_m, agent.critic_v, lr_c, b1, b2, aeps,
                    agent.steps[0])
    # ---- actor step, with the updated critics
    ga = np.empty_like(agent.actor)
    if actor_horizon == 0:
        logp = np.empty(B, agent.dtype)
        lo, hi = agent.log_std_bounds
        aloss = _k._sac_actor_loss_grad(agent.actor, agent.dims_actor, agent.critic,
                                        agent.dims_critic, agent.activation_code, obs_actor,
                                        actor_noise.act[0], alpha, lo, hi, agent.scale,
                                        agent.bias, ga, logp)
    else:
        aloss, logp = svg_actor_loss_grad(agent, menv, np.ascontiguousarray(obs_actor),
                                          actor_horizon, actor_noise, alpha, ga)
    if actor_grad_clip is not None:
        clip_global_norm(ga, actor_grad_clip)
    agent.steps[1] += 1
    _k._adam_update(agent.actor, ga, agent.actor_m, agent.actor_v, lr_a, b1, b2, aeps,
                    agent.steps[1])
    # ---- temperature step
    tloss, tg = _k._sac_temperature_loss_grad(np.float64(agent.alpha_state[0]), logp, tent)
    agent.steps[2] += 1
    st = agent.alpha_state
    _k._adam_update(st[0:1], np.array([tg], st.dtype), st[1:2], st[2:3], lr_t, b1, b2, aeps,
                    agent.steps[2])
    _k._polyak_update(agent.critic_target, agent.critic, agent.tau)
    values = (closs, aloss, tloss, alpha, -float(np.mean(logp, dtype=np.float64)), mean_q)
    return {k: float(v) for k, v in zip(METRICS, values)}


def model_based_update_from(agent, menv, buffer, n_updates, model_buffer=None,
                            real_ratio=MBPOConfig.real_ratio, **switches):
    """``n_updates`` of :func:`model_based_update` on minibatches of ``agent.batch_size`` rows,
    ``int(real_ratio * batch_size)`` of them from ``buffer`` and the rest from ``model_buffer``
    (all from ``buffer`` when it is None or empty); indices from the agent's update stream.
    Returns the metrics averaged over the updates."""
    n, arrays, term = agent.buffer_arrays(buffer)
    bs = agent.batch_size
    use_model = model_buffer is not None and len(model_buffer) > 0
    n_real = int(real_ratio * bs) if use_model else bs
    if use_model and n_real < bs:
        m, m_arrays, m_term = agent.buffer_arrays(model_buffer, "model_buffer")
    sums = None
    for _ in range(n_updates):
        idx = np.empty(n_real, np.int64)
        _k._sac_sample_indices(agent.rng_state, n, idx)
        rows = [a[idx] for a in arrays] + [np.asarray(term[idx], bool)]
        if use_model and n_real < bs:
            jdx = np.empty(bs - n_real, np.int64)
            _k._sac_sample_indices(agent.rng_state, m, jdx)
            more = [a[jdx] for a in m_arrays] + [np.asarray(m_term[jdx], bool)]
            rows = [np.concatenate([x, y]) for x, y in zip(rows, more)]
        rows = [np.ascontiguousarray(x) for x in rows]
        metrics = model_based_update(agent, menv, *rows, **switches)
        sums = metrics if sums is None else {k: sums[k] + v for k, v in metrics.items()}
    return {k: v / n_updates for k, v in sums.items()}
