"""DHMBPO's update: a critic ensemble trained on model-based targets and an actor trained through
the model (Kubo, Parmas, Ishii, "Double Horizon Model-Based Policy Optimization", TMLR 2025).

One update from B states s_0 (drawn from the states of the long "distribution" rollouts):

1. the *training* rollout: h steps of the policy through the model from s_0, reparameterized
   (fixed standard normals for the actions and the model's samples, a random elite per row and
   step) and taped for the backward pass; alive_t = 1 until the termination function fires,
   c_t = gamma^t alive_t;
2. the critic's bounds follow the soft rewards ``r_t - alpha log pi_t`` (t < h) of the rollout
   (``EnsembleCritic.update_bounds``);
3. the critic target of (s_0, a_0) is the h-step soft return with the target ensemble at the end,

       y = sum_{t<h} c_t r_t - alpha sum_{1<=t<h} c_t log pi_t
           + c_h (min_{pair} Q'(s_h, a_h) - alpha log pi_h),

   and every member of the critic ensemble takes one Adam step on ``sum_e mean_b (Q_e(s_0, a_0) -
   y)^2`` (dropout on), then the Polyak step of the targets;
4. the actor takes one Adam step on SVG(h)'s loss ``-mean_b J(s_0)``, with the *updated*
   ensemble's mean (dropout on) at the end of the rollout,

       J(s_0) = sum_{t<h} c_t (r_t - alpha log pi_t) + c_h (mean_e Q_e(s_h, a_h) - alpha log pi_h),

   its gradient by backpropagation through the taped model steps, the rewards' gradients and the
   actor's own samples (the same rollout as the critic target: the actor has not moved);
5. the temperature takes SAC's step towards the target entropy (log pi of a_0).

Metrics as ``SAC.update``'s (``fastmbrl.agents.sac.METRICS``).
"""
import numpy as np

from fastmbrl.agents._mb_grads import _hp, _model_arrays, _model_step, _reward_parts, _sample, \
    draw_noise
from fastmbrl.backend import use_compiled

if use_compiled():
    from fastmbrl.agents import _sac_kernels as _k
else:  # pragma: no cover - exercised by the FASTMBRL_PUREPYTHON run
    from fastmbrl.agents import _sac_reference as _k

__all__ = ["TapedRollout", "taped_rollout", "rollout_backward", "double_horizon_update"]


class TapedRollout:
    """What :func:`rollout_backward` needs of a training rollout, and its forward values.

    Attributes
    ----------
    states, actions, nexts : lists of (B, D) arrays, one per step t < h
    tapes : list of the model steps' tapes
    weights : list of (B,) c_t
    rewards, logps : lists of (B,) r_t and log pi(a_t|s_t), t < h
    s_h, a_h, logp_h, c_h : the final state, its action, log pi and weight
    total : (B,) float64 ``sum_{t<h} c_t (r_t - alpha log pi_t)`` (live rows' rewards only)
    """


def taped_rollout(agent, menv, obs, horizon, noise, alpha, actor=None):
    """The training rollout of h = ``horizon`` steps from ``obs`` (B, D_obs), taped."""
    actor = agent.actor if actor is None else actor
    arrays = _model_arrays(menv) if horizon > 0 else None
    reward_fn, grad_fn = _reward_parts(menv, arrays) if horizon > 0 else (None, None)
    B = obs.shape[0]
    rec = TapedRollout()
    rec.arrays, rec.reward_fn, rec.grad_fn = arrays, reward_fn, grad_fn
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
    rec.noise = noise
    return rec


def rollout_backward(agent, rec, d_s, d_a, alpha, grad_out, actor=None):
    """Gradient of the loss ``-mean_b J(s_0)`` with respect to the actor's parameters into
    ``grad_out`` (overwritten), given the loss's cotangents ``d_s``, ``d_a`` at (s_h, a_h) from the
    terminal value (the terminal ``-alpha log pi_h`` term and every step are added here)."""
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


def double_horizon_update(agent, critic, menv, obs, horizon, noise=None):
    """One DHMBPO update (module docstring) from the states ``obs`` (B, D_obs, agent dtype).

    Parameters
    ----------
    agent : fastmbrl.agents.SAC
        Its actor, temperature and update stream are used; its own twin critics are not.
    critic : fastmbrl.agents.ensemble_critic.EnsembleCritic
    menv : fastmbrl.models.ModelEnv
    obs : float array (B, D_obs)
    horizon : int
        h >= 1, the training rollout's length.
    noise : fastmbrl.agents._mb_grads.ModelNoise, optional
        act (h+1, B, D_act), model (h, B, D_out), members (h, B); drawn from the agent's update
        stream when not given.

    Returns
    -------
    dict of the metrics of ``fastmbrl.agents.sac.METRICS``.
    """
    from fastmbrl.agents.sac import METRICS

    if horizon < 1:
        raise ValueError(f"horizon: expected at least 1 model step, got {horizon}")
    obs = np.ascontiguousarray(obs, agent.dtype)
    B = obs.shape[0]
    if noise is None:
        noise = draw_noise(agent, _model_arrays(menv), B, horizon + 1, horizon, menv.out_dim)
    alpha = agent.temperature
    dt = agent.dtype
    rec = taped_rollout(agent, menv, obs, horizon, noise, alpha)
    # ---- the critic's bounds, then its target and its step
    soft = np.concatenate([r.astype(np.float64) - alpha * lp.astype(np.float64)
                           for r, lp in zip(rec.rewards, rec.logps)])
    critic.update_bounds(soft, agent.gamma)
    c_h = rec.c_h.astype(np.float64)
    q_end = critic.target_min(rec.s_h, rec.a_h)
    y = rec.total + alpha * rec.logps[0].astype(np.float64) \
        + c_h * (np.where(c_h > 0, q_end, 0.0) - alpha * rec.logp_h.astype(np.float64))
    gc = np.empty_like(critic.params)
    closs, mean_q = critic.loss_grad(obs, rec.actions[0], y, gc)
    critic.step(gc)
    # ---- the actor, through the rollout, with the updated critic at its end
    qm, d_s, d_a = critic.mean_vjp(rec.s_h, rec.a_h, -c_h / B)
    total = rec.total + c_h * (np.where(c_h > 0, qm, 0.0) - alpha * rec.logp_h)
    ga = np.empty_like(agent.actor)
    rollout_backward(agent, rec, d_s.astype(dt), d_a.astype(dt), alpha, ga)
    hp = agent.hyperparameters
    b1, b2, aeps = hp["beta1"], hp["beta2"], hp["adam_eps"]
    agent.steps[1] += 1
    _k._adam_update(agent.actor, ga, agent.actor_m, agent.actor_v, hp["lr_actor"], b1, b2, aeps,
                    agent.steps[1])
    # ---- the temperature
    logp0 = rec.logps[0]
    tloss, tg = _k._sac_temperature_loss_grad(np.float64(agent.alpha_state[0]), logp0,
                                              hp["target_entropy"])
    agent.steps[2] += 1
    st = agent.alpha_state
    _k._adam_update(st[0:1], np.array([tg], st.dtype), st[1:2], st[2:3], hp["lr_alpha"], b1, b2,
                    aeps, agent.steps[2])
    values = (closs, -float(np.mean(total)), tloss, alpha,
              -float(np.mean(logp0, dtype=np.float64)), mean_q)
    return {k: float(v) for k, v in zip(METRICS, values)}
