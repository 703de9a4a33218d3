"""NumPy twin of ``fastmbrl.models._rollout_kernels`` (same names, same signatures)."""
import numpy as np

from fastmbrl.models._reference import _model_step
from fastmbrl.models._user_functions import (REWARD_FN, REWARD_LATER, REWARD_LEARNED,  # noqa: F401
                                             TERM_FN, TERM_NONE)
from fastmbrl.nn._mlp_reference import _mlp_forward, _squash_head


def _policy_rollout(start_obs, actor, dims_a, act_code, log_std_min, log_std_max, scale, bias,
                    act_noise, members, model_noise, flat, layer_dims, ensemble_size, activation,
                    plain_idx, angle_idx, delta_mask, in_mean, in_std, out_mean, out_std,
                    max_logvar, min_logvar, reward_mode, term_mode, reward_fn, termination_fn,
                    obs_out, act_out, reward_out, next_obs_out, term_out, counts_out):
    """Twin of the kernel (see ``_rollout_kernels._policy_rollout``)."""
    n_rows, d_obs = start_obs.shape
    horizon = counts_out.shape[0]
    d_out = out_mean.shape[0]
    dims = np.asarray(layer_dims)
    max_hidden = int(max(dims[1:-1])) if dims.size > 2 else 1
    dt = start_obs.dtype
    rows = np.arange(n_rows)
    cur = start_obs.copy()
    counts_out[:] = 0
    off = 0
    for t in range(horizon):
        n = rows.size
        if n == 0:
            break
        counts_out[t] = n
        out = _mlp_forward(actor, dims_a, 1, 0, act_code, cur)[-1]
        a = np.empty((n, scale.shape[0]), dt)
        _squash_head(out, np.ascontiguousarray(act_noise[t, rows]), log_std_min, log_std_max,
                     scale, bias, a, np.empty(n, dt))
        a = np.clip(a, bias - scale, bias + scale).astype(dt)
        nxt = np.empty((n, d_obs), dt)
        rew = np.zeros(n, dt)
        _model_step(cur, a, members[t, rows].astype(np.int64),
                    np.ascontiguousarray(model_noise[t, rows]), flat, layer_dims, ensemble_size,
                    activation, plain_idx, angle_idx, delta_mask, in_mean, in_std, out_mean,
                    out_std, max_logvar, min_logvar, np.empty(n, np.int64),
                    np.empty(ensemble_size + 1, np.int64), np.empty(ensemble_size, np.int64),
                    np.empty((n, dims[0]), dt), np.empty((n, dims[-1]), dt),
                    np.empty((n, d_out), dt), np.empty(n * max_hidden, dt),
                    np.empty(n * max_hidden, dt), np.empty(2 * n * max(max_hidden, d_out), dt),
                    nxt, rew)
        if reward_mode == REWARD_FN:
            status = reward_fn(cur, a, nxt, rew)
            if status != 0:
                return (t * 2 + 0) * 4 + status
        elif reward_mode == REWARD_LATER:
            rew[:] = 0.0
        done = np.zeros(n, bool)
        if term_mode == TERM_FN:
            status = termination_fn(cur, a, nxt, done)
            if status != 0:
                return (t * 2 + 1) * 4 + status
        obs_out[off:off + n] = cur
        next_obs_out[off:off + n] = nxt
        act_out[off:off + n] = a
        reward_out[off:off + n] = rew
        term_out[off:off + n] = done
        off += n
        rows = rows[~done]
        cur = np.ascontiguousarray(nxt[~done])
    return 0
