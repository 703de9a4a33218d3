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

from fastmbrl.agents._mb_grads import (TapedRollout, _model_arrays, draw_noise, rollout_backward,
                                       taped_rollout)
from fastmbrl.backend import kernels

# the compiled kernels or their NumPy twins (FASTMBRL_PUREPYTHON=1), chosen by fastmbrl.backend
_k = kernels("fastmbrl.agents._sac_kernels")

__all__ = ["TapedRollout", "taped_rollout", "rollout_backward", "double_horizon_update"]


def double_horizon_update(agent, critic, menv, obs, horizon, noise=None, scaling=None,
                          model_noise=True, train_actor=True):
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
    scaling : fastmbrl.agents.obs_scaling.ObsScaling, optional
        Train the actor and the critics on normalized observations (their first layers' steps go
        through it); default: raw observations.
    model_noise : bool
        False: the drawn model normals are zeroed, so each row's member predicts its mean (the
        draws are taken all the same, keeping the stream; ``noise`` given is used as it is).
    train_actor : bool
        False: steps 1-3 only, the critic's update (the actor and the temperature are left as
        they are, their metrics are NaN).

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
        if not model_noise:
            noise.model[...] = 0
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
    if scaling is None:
        critic.step(gc)
    else:
        scaling.critic_step(critic, gc)
    logp0 = rec.logps[0]
    entropy = -float(np.mean(logp0, dtype=np.float64))
    if not train_actor:
        return dict(zip(METRICS, map(float, (closs, np.nan, np.nan, alpha, entropy, mean_q))))
    # ---- the actor, through the rollout, with the updated critic at its end
    qm, d_s, d_a = critic.mean_vjp(rec.s_h, rec.a_h, -c_h / B)
    total = rec.total + c_h * (np.where(c_h > 0, qm, 0.0) - alpha * rec.logp_h)
    ga = np.empty_like(agent.actor)
    rollout_backward(agent, rec, d_s.astype(dt), d_a.astype(dt), alpha, ga)
    hp = agent.hyperparameters
    b1, b2, aeps = hp["beta1"], hp["beta2"], hp["adam_eps"]
    agent.steps[1] += 1
    if scaling is None:
        _k._adam_update(agent.actor, ga, agent.actor_m, agent.actor_v, hp["lr_actor"], b1, b2,
                        aeps, agent.steps[1])
    else:
        scaling.actor_step(agent, ga, hp["lr_actor"], b1, b2, aeps, agent.steps[1])
    # ---- the temperature
    tloss, tg = _k._sac_temperature_loss_grad(np.float64(agent.alpha_state[0]), logp0,
                                              hp["target_entropy"])
    agent.steps[2] += 1
    st = agent.alpha_state
    _k._adam_update(st[0:1], np.array([tg], st.dtype), st[1:2], st[2:3], hp["lr_alpha"], b1, b2,
                    aeps, agent.steps[2])
    return dict(zip(METRICS, map(float, (closs, -np.mean(total), tloss, alpha, entropy, mean_q))))
