"""NumPy twins of ``fastmbrl.planning._kernels`` (same names and signatures).

The ground truth for the compiled rollout, and what runs when ``FASTMBRL_PUREPYTHON=1``. Written
step by step with whole-array NumPy operations; each step is the model-step twin in
``fastmbrl.models._reference``.
"""
import numpy as np

from fastmbrl.models._reference import _model_predict, _model_step_grouped
from fastmbrl.models._user_functions import (REWARD_FN, REWARD_LATER,  # noqa: F401
                                             REWARD_LEARNED, TERM_FN, TERM_LATER, TERM_NONE)
from fastmbrl.nn._rng_reference import GOLDEN, _mix64


def _zero_reward(obs, act, next_obs):
    """Placeholder reward function: zeros (N,)."""
    return np.zeros(obs.shape[0], dtype=obs.dtype)


def _never_done(obs, act, next_obs):
    """Placeholder termination function: a bool array (N,) of False."""
    return np.zeros(obs.shape[0], dtype=bool)


def _masked_returns(rewards, dones, n_particles, values_out):
    """Reference per-candidate value: mean over particles of rewards summed until termination.

    Parameters
    ----------
    rewards : float array (H, R)
    dones : bool array (H, R)
    n_particles : int
    values_out : float array (P,), written
    """
    done_before = np.zeros_like(dones)
    done_before[1:] = np.logical_or.accumulate(dones, axis=0)[:-1]
    per_row = np.where(done_before, 0.0, rewards).sum(axis=0)
    values_out[...] = per_row.reshape(-1, n_particles).mean(axis=1)


def _shuffle_rows(uniforms, perm_out):
    """Reference Fisher-Yates shuffle of ``0..R-1`` by ``uniforms`` (R,) into ``perm_out``."""
    n = perm_out.shape[0]
    perm_out[:] = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = min(int(uniforms[i] * (i + 1)), i)
        perm_out[i], perm_out[j] = perm_out[j], perm_out[i]


def _rollout_values(actions, obs0, n_particles, perm_uniforms, perms, noise, flat, layer_dims,
                    ensemble_size, activation, members, plain_idx, angle_idx, delta_mask, in_mean,
                    in_std, out_mean, out_std, max_logvar, min_logvar, propagation, reward_mode,
                    term_mode, reward_fn, termination_fn, states, act_rows, rewards, dones, x_buf,
                    y_buf, std_buf, pred_mean, pred_var, h0, h1, ebuf, values_out,
                    bonus_weight, bonus_mean, bonus_var, bonus, stop):
    """Reference of the compiled rollout; see ``fastmbrl.planning._kernels._rollout_values``."""
    n_cand, horizon, d_act = actions.shape
    n_rows = n_cand * n_particles
    d_obs = obs0.shape[0]
    n_used = len(members)
    block_starts = (np.arange(n_used + 1) * n_rows) // n_used
    for s in range(perms.shape[0]):
        _shuffle_rows(perm_uniforms[s], perms[s])
    states[0] = obs0
    act_rows[...] = np.repeat(actions.transpose(1, 0, 2), n_particles, axis=1)
    dones[...] = False
    for t in range(horizon):
        if stop[0] != 0:
            return -1 - t
        obs, nxt, acts = states[t], states[t + 1], act_rows[t]
        if propagation == 2:
            mean = np.zeros((n_rows, out_mean.shape[0]), dtype=obs.dtype)
            for m in range(n_used):
                _model_predict(obs, acts, members[m:m + 1], flat, layer_dims, ensemble_size,
                               activation, plain_idx, angle_idx, delta_mask, in_mean, in_std,
                               out_mean, out_std, max_logvar, min_logvar, x_buf, y_buf, h0, h1,
                               ebuf, pred_mean, pred_var)
                mean += pred_mean[0]
                if bonus_weight > 0.0:
                    bonus_mean[m] = pred_mean[0]
            mean /= n_used
            nxt[...] = mean[:, :d_obs]
            if reward_mode == REWARD_LEARNED:
                rewards[t] = mean[:, d_obs]
        else:
            _model_step_grouped(obs, acts, perms[t if perms.shape[0] > 1 else 0], block_starts,
                                members, noise[t], flat, layer_dims, ensemble_size, activation,
                                plain_idx, angle_idx, delta_mask, in_mean, in_std, out_mean,
                                out_std, max_logvar, min_logvar, x_buf, y_buf, std_buf, h0, h1,
                                ebuf, nxt, rewards[t])
        if bonus_weight > 0.0:
            if propagation != 2:        # expectation: the members' means were kept above
                _model_predict(obs, acts, members, flat, layer_dims, ensemble_size, activation,
                               plain_idx, angle_idx, delta_mask, in_mean, in_std, out_mean,
                               out_std, max_logvar, min_logvar, x_buf, y_buf, h0, h1, ebuf,
                               bonus_mean, bonus_var)
            _disagreement(bonus_mean, n_used, d_obs, out_std, bonus[t])
        if reward_mode == REWARD_FN:
            status = reward_fn(obs, acts, nxt, rewards[t])
            if status != 0:
                return (t * 2 + 0) * 4 + status
        if term_mode == TERM_FN:
            status = termination_fn(obs, acts, nxt, dones[t])
            if status != 0:
                return (t * 2 + 1) * 4 + status
    if reward_mode != REWARD_LATER and term_mode != TERM_LATER:
        _masked_returns(rewards, dones, n_particles, values_out)
        if bonus_weight > 0.0:
            _add_bonus(bonus, dones, n_particles, bonus_weight, values_out)
    return 0


def _disagreement(means, n_used, d_obs, out_std, u_out):
    """Reference member disagreement: variance over the first M members' means, normalised."""
    mu = means[:n_used, :, :d_obs]
    u_out[...] = (mu.var(axis=0) / out_std[:d_obs] ** 2).sum(axis=1)


def _add_bonus(bonus, dones, n_particles, weight, values_out):
    """Reference: ``values_out += weight *`` the masked bonus sums averaged over particles."""
    done_before = np.zeros_like(dones)
    done_before[1:] = np.logical_or.accumulate(dones, axis=0)[:-1]
    per_row = np.where(done_before, 0.0, bonus).sum(axis=0)
    values_out += weight * per_row.reshape(-1, n_particles).mean(axis=1)


def _cem_sample(mean, var, lower, upper, z, samples):
    """Reference CEM candidates: ``clip(mean + std * z)``, the variance capped by the bounds."""
    cap = np.minimum((mean - lower) / 2, (upper - mean) / 2) ** 2
    std = np.sqrt(np.minimum(var, cap))
    samples[...] = np.clip(mean + std * z, lower, upper)


def _cem_refit(samples, values, num_elites, alpha, mean, var):
    """Reference CEM refit to the ``num_elites`` best candidates, smoothed by ``alpha`` (in place)."""
    elites = samples[np.argpartition(-values, num_elites - 1)[:num_elites]]
    elite_mean = elites.mean(axis=0)
    elite_var = ((elites - elite_mean) ** 2).mean(axis=0)
    mean[...] = alpha * mean + (1 - alpha) * elite_mean
    var[...] = alpha * var + (1 - alpha) * elite_var


def _splitmix64(key, counter):
    """Reference SplitMix64 outputs ``counter`` (uint64 array) of the stream ``key`` (uint64)."""
    counter = np.asarray(counter, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix64(np.uint64(key) + (counter + np.uint64(1)) * GOLDEN)


def _fill_uniform(key, out):
    """Reference uniforms in [0, 1): ``out[q] = (splitmix64(key, q) >> 11) * 2**-53``."""
    z = _splitmix64(key, np.arange(out.shape[0], dtype=np.uint64))
    out[...] = (z >> np.uint64(11)).astype(np.float64) / 9007199254740992.0


def _fill_normal(key, out):
    """Reference Box-Muller normals from the SplitMix64 stream ``key`` (see the kernel's Notes)."""
    n = out.shape[0]
    half = (n + 1) // 2
    z = _splitmix64(key, np.arange(half, dtype=np.uint64))
    u = ((z >> np.uint64(40)) + np.uint64(1)).astype(np.float64) / 16777216.0
    v = ((z >> np.uint64(16)) & np.uint64(0xFFFFFF)).astype(np.float64) / 16777216.0
    r = np.sqrt(-2.0 * np.log(u))
    out[:half] = r * np.cos(2 * np.pi * v)
    out[half:] = (r * np.sin(2 * np.pi * v))[:n - half]
