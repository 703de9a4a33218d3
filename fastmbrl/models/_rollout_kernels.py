"""The compiled policy rollout through the learned model (Numba): MBPO's / Dyna's model data.

``_policy_rollout`` runs a whole batch of branched rollouts in one call: at every step the policy's
forward pass and its tanh-squashed Gaussian sample (the kernels the SAC actor itself runs,
``fastmbrl.nn._mlp_kernels._mlp_forward`` and ``_squash_head``), one model step with one member
per row (``fastmbrl.models._kernels._model_step``), the reward (a compiled reward function or the
learned reward head) and the termination function; rows whose termination function fires are
written with ``terminated=True`` and dropped from the following steps.

Design
------
* Randomness comes from the caller, indexed by (step, original row): ``act_noise (T, N, D_act)``,
  ``members (T, N)`` and ``model_noise (T, N, D_out)``. Which rows are still alive therefore never
  changes the draws of the others, and the NumPy twin (``_rollout_reference``) reproduces a call
  exactly from the same arrays.
* Outputs are written step after step into ``(T N, ...)`` arrays: step 0's live rows, then step
  1's, ...; ``counts_out[t]`` is the number of live rows at step t (in their original order).
* Per step the live rows are gathered into fresh C-contiguous arrays (the user functions' compiled
  signature is for C arrays, the model step reshapes its scratch): a few allocations of the live
  size per step, negligible beside the network products.
* Reward and termination functions arrive as first-class function values behind the planners'
  status wrapper (``fastmbrl.models._user_functions._compiled_function_handle``): ``f(obs, act,
  next_obs, out) -> int64`` writes ``out`` and returns 0, 1 (the user's function raised) or 2
  (wrong output length); the rollout then stops and returns ``(t * 2 + which) * 4 + status``.
"""
import numpy as np
from numba import njit

from fastmbrl.models._kernels import _model_step
from fastmbrl.models._user_functions import (REWARD_FN, REWARD_LATER, REWARD_LEARNED,  # noqa: F401
                                             TERM_FN, TERM_NONE)
from fastmbrl.nn._mlp_kernels import _mlp_forward, _squash_head


@njit(cache=True, nogil=True)
def _policy_rollout(start_obs, actor, dims_a, act_code, log_std_min, log_std_max, scale, bias,
                    act_noise, members, model_noise, flat, layer_dims, ensemble_size, activation,
                    plain_idx, angle_idx, delta_mask, in_mean, in_std, out_mean, out_std,
                    max_logvar, min_logvar, reward_mode, term_mode, reward_fn, termination_fn,
                    obs_out, act_out, reward_out, next_obs_out, term_out, counts_out):
    """Roll N start states T steps through the model with the squashed-Gaussian policy.

    Parameters
    ----------
    start_obs : float array (N, D_obs)
    actor, dims_a, act_code : the policy network (SAC actor: 1-member flat layout, D_obs -> 2 D_act)
    log_std_min, log_std_max : float, the log-std clip
    scale, bias : float arrays (D_act,); ``a = clip(scale tanh(u) + bias, bias - scale, bias + scale)``
    act_noise : float array (T, N, D_act)
        Standard normal draws of the policy (``u = mean + std * eps``; 0 gives the mean action).
    members : int64 array (T, N), the member of each (step, row)
    model_noise : float array (T, N, D_out), the model's standard normal draws (0: member mean)
    flat, ..., min_logvar : the model (``fastmbrl.models.arrays.kernel_model_args``)
    reward_mode : int, REWARD_FN, REWARD_LEARNED or REWARD_LATER (``reward_out`` left 0)
    term_mode : int, TERM_NONE or TERM_FN
    reward_fn, termination_fn : status-wrapped compiled functions (placeholders when unused)
    obs_out, next_obs_out : float arrays (T N, D_obs), written
    act_out : float array (T N, D_act), written
    reward_out : float array (T N,), written
    term_out : bool array (T N,), written
    counts_out : int64 array (T,), written: live rows at each step

    Returns
    -------
    int
        0, or the failure code of a user function (the rollout stopped at that step).
    """
    n_rows, d_obs = start_obs.shape
    horizon = counts_out.shape[0]
    d_act = scale.shape[0]
    d_out = out_mean.shape[0]
    rows = np.arange(n_rows)
    cur = start_obs.copy()
    n = n_rows
    off = 0
    max_hidden = 1
    for k in range(1, layer_dims.shape[0] - 1):
        max_hidden = max(max_hidden, layer_dims[k])
    for t in range(horizon):
        counts_out[t] = 0
    for t in range(horizon):
        if n == 0:
            break
        counts_out[t] = n
        # ---- the policy: forward pass and squashed-Gaussian sample (SAC's kernels)
        acts = _mlp_forward(actor, dims_a, 1, 0, act_code, cur)
        eps = np.empty((n, d_act), dtype=cur.dtype)
        mem = np.empty(n, dtype=np.int64)
        nz = np.empty((n, d_out), dtype=cur.dtype)
        for i in range(n):
            r = rows[i]
            mem[i] = members[t, r]
            for j in range(d_act):
                eps[i, j] = act_noise[t, r, j]
            for j in range(d_out):
                nz[i, j] = model_noise[t, r, j]
        a = np.empty((n, d_act), dtype=cur.dtype)
        logp = np.empty(n, dtype=cur.dtype)
        _squash_head(acts[len(acts) - 1], eps, log_std_min, log_std_max, scale, bias, a, logp)
        for i in range(n):
            for j in range(d_act):
                a[i, j] = min(max(a[i, j], bias[j] - scale[j]), bias[j] + scale[j])
        # ---- one model step, one member per row
        nxt = np.empty((n, d_obs), dtype=cur.dtype)
        rew = np.zeros(n, dtype=cur.dtype)
        _model_step(cur, a, mem, nz, flat, layer_dims, ensemble_size, activation, plain_idx,
                    angle_idx, delta_mask, in_mean, in_std, out_mean, out_std, max_logvar,
                    min_logvar, np.empty(n, np.int64), np.empty(ensemble_size + 1, np.int64),
                    np.empty(ensemble_size, np.int64), np.empty((n, layer_dims[0]), cur.dtype),
                    np.empty((n, layer_dims[layer_dims.shape[0] - 1]), cur.dtype),
                    np.empty((n, d_out), cur.dtype), np.empty(n * max_hidden, cur.dtype),
                    np.empty(n * max_hidden, cur.dtype),
                    np.empty(2 * n * max(max_hidden, d_out), cur.dtype), nxt, rew)
        # ---- reward and termination (compiled user code behind the status wrapper)
        if reward_mode == REWARD_FN:
            status = reward_fn(cur, a, nxt, rew)
            if status != 0:
                return (t * 2 + 0) * 4 + status
        elif reward_mode == REWARD_LATER:
            for i in range(n):
                rew[i] = 0.0
        done = np.zeros(n, dtype=np.bool_)
        if term_mode == TERM_FN:
            status = termination_fn(cur, a, nxt, done)
            if status != 0:
                return (t * 2 + 1) * 4 + status
        # ---- write the step's transitions, keep the rows that did not terminate
        m = 0
        for i in range(n):
            for j in range(d_obs):
                obs_out[off + i, j] = cur[i, j]
                next_obs_out[off + i, j] = nxt[i, j]
            for j in range(d_act):
                act_out[off + i, j] = a[i, j]
            reward_out[off + i] = rew[i]
            term_out[off + i] = done[i]
            if not done[i]:
                rows[m] = rows[i]
                for j in range(d_obs):
                    cur[m, j] = nxt[i, j]
                m += 1
        off += n
        n = m
        cur = cur[:n].copy()
    return 0
