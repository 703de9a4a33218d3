"""Numba kernels of the model rollout that turns action sequences into returns.

Design
------
* ``_rollout_values`` runs the whole horizon for a block of candidates in one call: each step is one
  call of the model-step kernel (``fastmbrl.models._kernels._model_step_grouped``: network input in
  member-block order, each member's forward pass on its contiguous block, the next state sampled
  with noise the caller drew), then the (Numba) reward and termination functions on the whole step.
* Rows are particles: row ``i`` belongs to candidate ``i // N``. ``perms[t, j]`` is the particle
  placed at position ``j`` of step ``t``'s network input; member ``m`` owns the positions
  ``[m R // M, (m+1) R // M)`` (a new permutation per step is "ts1", one for all steps "tsinf").
* Reward and termination functions arrive as first-class function values (``FunctionType``: a
  signature and an address, see ``fastmbrl.models._user_functions``), so the cached kernel is
  keyed by their signature, not by the function object.
* The caller (``fastmbrl.planning.rollout``) owns the RNG, allocates every buffer once per shape and
  may run two calls at once on disjoint candidates (``nogil=True``); nothing here allocates except
  what the user's reward and termination functions return. The caller fills the noise and shuffle
  uniforms with ``_fill_normal``/``_fill_uniform`` (counter-based SplitMix64 streams keyed from its
  NumPy generator: vectorized, much cheaper than ``Generator.standard_normal``).
* CEM's per-iteration sampling and elite refit are here too (``_cem_sample``, ``_cem_refit``).
"""
import math

import numpy as np
from numba import njit

from fastmbrl.models._kernels import _model_predict, _model_step_grouped
from fastmbrl.models._user_functions import (REWARD_FN, REWARD_LATER,  # noqa: F401
                                             REWARD_LEARNED, TERM_FN, TERM_LATER, TERM_NONE,
                                             _never_done, _zero_reward)
from fastmbrl.nn._numba import _bits_from_f32, _f32_from_bits
from fastmbrl.nn._rng import GOLDEN, _mix64

_JIT = dict(cache=True, nogil=True, fastmath=True, error_model="numpy")


@njit(**_JIT)
def _masked_returns(rewards, dones, n_particles, values_out):
    """Per-candidate value: mean over its particles of the rewards summed until termination.

    Parameters
    ----------
    rewards : float array (H, R)
        Reward of each step for each particle row.
    dones : bool array (H, R)
        Termination flag of each step; the reward of the terminating step counts, later ones do not.
    n_particles : int
        N; row ``i`` belongs to candidate ``i // N`` and ``R = P * N``.
    values_out : float array (P,), written

    Notes
    -----
    ``value_p = (1/N) sum_{i in p} sum_t r[t, i] prod_{s < t} (1 - done[s, i])``.
    """
    horizon, n_rows = rewards.shape
    n_cand = values_out.shape[0]
    for p in range(n_cand):
        total = 0.0
        for i in range(p * n_particles, (p + 1) * n_particles):
            ret = 0.0
            for t in range(horizon):
                ret += rewards[t, i]
                if dones[t, i]:
                    break
            total += ret
        values_out[p] = total / n_particles


@njit(**_JIT)
def _shuffle_rows(uniforms, perm_out):
    """A uniformly random permutation of ``0..R-1`` (Fisher-Yates) driven by the caller's uniforms.

    Parameters
    ----------
    uniforms : float64 array (R,), values in [0, 1)
    perm_out : int64 array (R,), written
    """
    n = perm_out.shape[0]
    for i in range(n):
        perm_out[i] = i
    for i in range(n - 1, 0, -1):
        j = min(int(uniforms[i] * (i + 1)), i)
        tmp = perm_out[i]
        perm_out[i] = perm_out[j]
        perm_out[j] = tmp


@njit(**_JIT)
def _rollout_values(actions, obs0, n_particles, perm_uniforms, perms, noise, flat, layer_dims,
                    ensemble_size, activation, members, plain_idx, angle_idx, delta_mask, in_mean,
                    in_std, out_mean, out_std, max_logvar, min_logvar, propagation, reward_mode,
                    term_mode, reward_fn, termination_fn, states, act_rows, rewards, dones, x_buf,
                    y_buf, std_buf, pred_mean, pred_var, h0, h1, ebuf, values_out,
                    bonus_weight, bonus_mean, bonus_var, bonus, stop):
    """Roll ``P`` action sequences through the ensemble from ``obs0`` and score them.

    Parameters
    ----------
    actions : float array (P, H, D_act), C-contiguous
        Candidate action sequences.
    obs0 : float array (D_obs,)
        Current observation; every particle starts there.
    n_particles : int
        N, particles per candidate; ``R = P * N`` rows (Python passes N = 1 for "expectation").
    perm_uniforms : float64 array (T, R)
        Uniform [0, 1) numbers that drive the Fisher-Yates shuffles of the rows: ``T = H`` ("ts1": a
        new member assignment each step) or ``T = 1`` ("tsinf": one for the whole horizon);
        ignored for "expectation".
    perms : int64 array (T, R), written
        Position-to-particle map of the network input built from ``perm_uniforms``.
    noise : float array (H, R, D_out)
        Standard normal noise for sampling each target column of each particle ("expectation":
        ignored, may be (1, 1, D_out)).
    flat, layer_dims, ensemble_size, activation :
        The ensemble network (see ``fastmbrl.models.arrays.ModelArrays``).
    members : int64 array (M,)
        Members used (the elites).
    plain_idx, angle_idx : int64 arrays
        Observation columns fed directly and as (sin, cos).
    delta_mask : bool array (D_obs,)
        Columns predicted as a change.
    in_mean, in_std : float arrays (D_in,)
    out_mean, out_std, max_logvar, min_logvar : float arrays (D_out,)
    propagation : int
        0 ts1, 1 tsinf, 2 expectation (deterministic mean of the members' means).
    reward_mode : int
        REWARD_FN (0) call ``reward_fn``, REWARD_LEARNED (1) learned reward (target column D_obs),
        REWARD_LATER (2) leave for the caller (codes of ``fastmbrl.models._user_functions``).
    term_mode : int
        TERM_NONE (0) never terminate, TERM_FN (1) call ``termination_fn``, TERM_LATER (2) leave
        for the caller.
    reward_fn, termination_fn : Numba functions ``(obs (R, D_obs), act (R, D_act), next_obs,
        out (R,)) -> int64``: the user's functions behind their status wrappers
        (``fastmbrl.models._user_functions``), which write the step's rewards (float) or
        termination flags (bool) into ``out`` and return a status (0 ok, 1 the user function
        raised, 2 its output did not have R rows); placeholders when unused.
    states : float array (H+1, R, D_obs), written
        ``states[t]`` is the particles' state before step ``t``.
    act_rows : float array (H, R, D_act), written
        Action of each particle row at each step.
    rewards : float array (H, R), written in reward modes 0 and 1.
    dones : bool array (H, R), written (False unless term_mode is 1).
    x_buf, y_buf, std_buf : float arrays (R, D_in), (R, 2 D_out), (R, D_out), scratch of the
        model step
    pred_mean, pred_var : float arrays (1, R, D_out) ("expectation"; else (1, 1, D_out), unused)
    h0, h1 : float arrays (>= R max(hidden widths),), scratch of the network
    ebuf : float array (>= 2 R D_out,), scratch of the model step
    values_out : float array (P,)
        Written with the candidates' values when neither mode is 2 (plus the optimism bonus).
    bonus_weight : float
        Weight ``w`` of the optimism bonus (see ``_disagreement``); 0 turns it off and then
        ``bonus_mean``, ``bonus_var`` and ``bonus`` are not touched (no extra work).
    bonus_mean, bonus_var : float arrays (>= M, R, D_out) when ``w > 0``, else any (k, 1, D_out)
        Scratch: every elite member's predicted mean and variance at each row's current state.
    bonus : float array (H, R) when ``w > 0``, else any 2-D, written
        Per-step, per-row member disagreement ``u[t, i]``; the value gains
        ``w (1/N) sum_{i in p} sum_t u[t, i]`` counted until termination like the rewards
        (``_add_bonus``; the caller adds it itself in modes 2).
    stop : uint8 array (1,)
        Read before every step: nonzero stops the rollout there (a deadline passed; another thread
        raises it while this call runs). Never written here.

    Returns
    -------
    int
        0, or ``(t * 2 + which) * 4 + status`` when the reward (``which`` 0) or termination
        (``which`` 1) function failed at step ``t`` with status 1 or 2; the rollout stopped there
        and ``values_out`` is not written. Negative, ``-1 - t``, when ``stop`` was raised before
        step ``t`` (``t`` steps were done): the rollout stopped there, ``values_out`` not written.

    Notes
    -----
    Each step is one call of the model-step kernel (``fastmbrl.models._kernels``):
    ``_model_step_grouped`` with this step's permutation as the row order and member ``m`` on the
    positions ``[m R // M, (m+1) R // M)`` (ts1, tsinf), or ``_model_predict`` per member
    (expectation). Chua et al. (2018), "Deep reinforcement learning in a handful of trials",
    Sec. 4-5 (PETS).
    """
    n_cand, horizon, d_act = actions.shape
    n_rows = n_cand * n_particles
    d_obs = obs0.shape[0]
    n_used = members.shape[0]
    n_perm_steps = perms.shape[0]
    # member m's block of positions (M + 1 integers: the one allocation besides the user functions)
    block_starts = np.empty(n_used + 1, dtype=np.int64)
    for m in range(n_used + 1):
        block_starts[m] = (m * n_rows) // n_used

    for s in range(n_perm_steps):
        _shuffle_rows(perm_uniforms[s], perms[s])
    for i in range(n_rows):
        for d in range(d_obs):
            states[0, i, d] = obs0[d]
    for t in range(horizon):
        for i in range(n_rows):
            p = i // n_particles
            for a in range(d_act):
                act_rows[t, i, a] = actions[p, t, a]
        for i in range(n_rows):
            dones[t, i] = False

    for t in range(horizon):
        # read at every step: another thread raises it at the deadline (nothing here writes it,
        # and the calls below are opaque, so the load is not hoisted out of the loop)
        if stop[0] != 0:
            return -1 - t
        obs = states[t]
        nxt = states[t + 1]
        acts = act_rows[t]
        if propagation == 2:
            # ---- every member on every row; the next state is the mean of the members' means
            for i in range(n_rows):
                for d in range(d_obs):
                    nxt[i, d] = 0.0
                if reward_mode == REWARD_LEARNED:
                    rewards[t, i] = 0.0
            for m in range(n_used):
                _model_predict(obs, acts, members[m:m + 1], flat, layer_dims, ensemble_size,
                               activation, plain_idx, angle_idx, delta_mask, in_mean, in_std,
                               out_mean, out_std, max_logvar, min_logvar, x_buf, y_buf, h0, h1,
                               ebuf, pred_mean, pred_var)
                for i in range(n_rows):
                    for d in range(d_obs):
                        nxt[i, d] += pred_mean[0, i, d]
                    if reward_mode == REWARD_LEARNED:
                        rewards[t, i] += pred_mean[0, i, d_obs]
                if bonus_weight > 0.0:       # the bonus reuses the members' means
                    for i in range(n_rows):
                        for d in range(d_obs):
                            bonus_mean[m, i, d] = pred_mean[0, i, d]
            inv = 1.0 / n_used
            for i in range(n_rows):
                for d in range(d_obs):
                    nxt[i, d] *= inv
                if reward_mode == REWARD_LEARNED:
                    rewards[t, i] *= inv
        else:
            # ---- one member per contiguous block of this step's permutation, sampled
            _model_step_grouped(obs, acts, perms[t if n_perm_steps > 1 else 0], block_starts,
                                members, noise[t], flat, layer_dims, ensemble_size, activation,
                                plain_idx, angle_idx, delta_mask, in_mean, in_std, out_mean,
                                out_std, max_logvar, min_logvar, x_buf, y_buf, std_buf, h0, h1,
                                ebuf, nxt, rewards[t])

        # ---- optimism bonus: every elite member's mean at this step's rows (only when on)
        if bonus_weight > 0.0:
            if propagation != 2:
                _model_predict(obs, acts, members, flat, layer_dims, ensemble_size, activation,
                               plain_idx, angle_idx, delta_mask, in_mean, in_std, out_mean,
                               out_std, max_logvar, min_logvar, x_buf, y_buf, h0, h1, ebuf,
                               bonus_mean, bonus_var)
            _disagreement(bonus_mean, n_used, d_obs, out_std, bonus[t])

        # ---- reward and termination of the whole step, compiled user code behind a status
        # wrapper (fastmbrl.models._user_functions): it writes the step's row and returns 0, or 1
        # if the user function raised, 2 if its output had the wrong length; the rollout stops
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


@njit(**_JIT)
def _disagreement(means, n_used, d_obs, out_std, u_out):
    """Member disagreement of each row: the variance across members of the predicted mean.

    Parameters
    ----------
    means : float array (>= M, R, D_out)
        ``means[m, i]``: member ``m``'s predicted mean of row ``i``'s next state (raw units).
    n_used : int
        M, the members compared (the first M of ``means``).
    d_obs : int
        Only the observation columns ``< D_obs`` count (not a learned reward).
    out_std : float array (D_out,)
        The target normaliser's scale: differences are measured in its (normalised) units.
    u_out : float array (R,), written

    Notes
    -----
    ``u_i = sum_{d < D_obs} (1/M) sum_m (mu_{m,i,d} - mean_m mu_{m,i,d})^2 / out_std_d^2``: the
    epistemic part of the ensemble's predictive variance (course notes Sec. 4), summed over
    dims; 0 when the members agree (and for M = 1).
    """
    n_rows = u_out.shape[0]
    inv_m = 1.0 / n_used
    for i in range(n_rows):
        u_out[i] = 0.0
    for d in range(d_obs):
        inv_var = 1.0 / (out_std[d] * out_std[d])
        for i in range(n_rows):
            s = 0.0
            for m in range(n_used):
                s += means[m, i, d]
            mu = s * inv_m
            ss = 0.0
            for m in range(n_used):
                diff = means[m, i, d] - mu
                ss += diff * diff
            u_out[i] += ss * inv_m * inv_var


@njit(**_JIT)
def _add_bonus(bonus, dones, n_particles, weight, values_out):
    """Add ``weight`` times the per-candidate mean over particles of the summed bonus, in place.

    Parameters
    ----------
    bonus : float array (H, R)
        Per-step disagreement of each row (``_disagreement``).
    dones : bool array (H, R)
        Termination flags; the terminating step's bonus counts, later ones do not (as rewards).
    n_particles : int
        N; row ``i`` belongs to candidate ``i // N``.
    weight : float
    values_out : float array (P,), updated
    """
    horizon = bonus.shape[0]
    for p in range(values_out.shape[0]):
        total = 0.0
        for i in range(p * n_particles, (p + 1) * n_particles):
            for t in range(horizon):
                total += bonus[t, i]
                if dones[t, i]:
                    break
        values_out[p] += weight * total / n_particles


@njit(**_JIT)
def _cem_sample(mean, var, lower, upper, z, samples):
    """CEM candidates ``clip(mean + std * z, lower, upper)``, the variance capped by the bounds.

    Parameters
    ----------
    mean, var : float64 arrays (H, D_act)
        Sampling distribution.
    lower, upper : float64 arrays (H, D_act)
    z : float64 array (P, H, D_act)
        Standard normal draws (truncated by the caller).
    samples : float64 array (P, H, D_act), written

    Notes
    -----
    ``std = sqrt(min(var, min(mean - lower, upper - mean)**2 / 4))`` keeps two standard deviations
    inside the bounds (as mbrl-lib does). One compiled call replaces about ten NumPy operations
    per CEM iteration.
    """
    n_cand, horizon, d_act = samples.shape
    for h in range(horizon):
        for a in range(d_act):
            m = mean[h, a]
            half_room = min(m - lower[h, a], upper[h, a] - m) / 2.0
            std = math.sqrt(min(var[h, a], half_room * half_room))
            lo = lower[h, a]
            hi = upper[h, a]
            for p in range(n_cand):
                samples[p, h, a] = min(max(m + std * z[p, h, a], lo), hi)


@njit(**_JIT)
def _cem_refit(samples, values, num_elites, alpha, mean, var):
    """Refit the CEM distribution in place to the ``num_elites`` best candidates (smoothed).

    Parameters
    ----------
    samples : float64 array (P, H, D_act)
    values : float64 array (P,)
        Larger is better (NaN already mapped to -inf by the caller).
    num_elites : int
        K, ``1 <= K <= P``.
    alpha : float
        ``mean = alpha mean + (1 - alpha) elite_mean``, the same for the variance.
    mean, var : float64 arrays (H, D_act), updated in place

    Notes
    -----
    The elite variance is the population variance (divided by K).
    """
    n_cand, horizon, d_act = samples.shape
    order = np.argsort(-values)
    inv_k = 1.0 / num_elites
    for h in range(horizon):
        for a in range(d_act):
            s = 0.0
            for e in range(num_elites):
                s += samples[order[e], h, a]
            m = s * inv_k
            ss = 0.0
            for e in range(num_elites):
                d = samples[order[e], h, a] - m
                ss += d * d
            mean[h, a] = alpha * mean[h, a] + (1.0 - alpha) * m
            var[h, a] = alpha * var[h, a] + (1.0 - alpha) * ss * inv_k


# SplitMix64 (Steele, Lea and Flood 2014, ``fastmbrl.nn._rng``): output q of the stream keyed by
# ``key`` is a mix of ``key + (q + 1) * golden``; a counter-based generator, so every element is
# computed independently and the fill loops vectorize (AVX-512 has 64-bit multiplies).
@njit(**_JIT)
def _splitmix64(key, counter):
    """Output ``counter`` (uint64) of the SplitMix64 stream starting at ``key`` (uint64)."""
    return _mix64(key + (counter + np.uint64(1)) * GOLDEN)


@njit(**_JIT)
def _fill_uniform(key, out):
    """Fill ``out`` (n,) float64 with uniforms in [0, 1) (53 bits) from the stream ``key`` (uint64).

    Parameters
    ----------
    key : uint64
    out : float64 array (n,), written; ``out[q] = (splitmix64(key, q) >> 11) * 2**-53``
    """
    scale = 1.0 / 9007199254740992.0
    for q in range(out.shape[0]):
        out[q] = np.float64(_splitmix64(key, np.uint64(q)) >> np.uint64(11)) * scale


@njit(**_JIT)
def _log_f32(x):
    """float32 natural log of a positive normal ``x``.

    The exponent comes from the bits, an atanh series handles the mantissa in [sqrt(1/2), sqrt(2))
    (truncation error below 1e-9, so float32 rounding dominates).
    """
    bits = _bits_from_f32(x)
    e = np.float32(((bits >> 23) & 0xFF) - 127)
    m = _f32_from_bits((bits & 0x7FFFFF) | 0x3F800000)       # [1, 2)
    big = m > np.float32(1.4142135623730951)
    m = np.float32(0.5) * m if big else m
    e = e + np.float32(1.0) if big else e
    s = (m - np.float32(1.0)) / (m + np.float32(1.0))
    s2 = s * s
    poly = np.float32(1.0) + s2 * (np.float32(1.0 / 3.0) + s2 * (np.float32(0.2) + s2 * (
        np.float32(1.0 / 7.0) + s2 * np.float32(1.0 / 9.0))))
    return e * np.float32(0.6931471805599453) + np.float32(2.0) * s * poly


@njit(**_JIT)
def _box_muller_f32(z):
    """Two float32 standard normals ``(r cos 2 pi v, r sin 2 pi v)`` from one 64-bit draw ``z``.

    ``u = (bits 40-63 + 1) 2**-24`` in (0, 1], ``v = bits 16-39 * 2**-24``, ``r = sqrt(-2 log u)``;
    the angle is reduced to a quarter turn ``a`` in [-pi/4, pi/4) where degree-9 sine and degree-8
    cosine polynomials are accurate to 2e-9, then rotated by the quadrant.
    """
    inv24 = np.float32(1.0 / 16777216.0)
    u = np.float32(np.int64(z >> np.uint64(40)) + 1) * inv24
    v24 = np.int64((z >> np.uint64(16)) & np.uint64(0xFFFFFF))
    x4 = np.float32(v24) * (np.float32(4.0) * inv24)                     # 4 v in [0, 4)
    qi = np.int32(x4 + np.float32(0.5))
    a = (x4 - np.float32(qi)) * np.float32(1.5707963267948966)
    a2 = a * a
    sn = a * (np.float32(1.0) + a2 * (np.float32(-1.0 / 6.0) + a2 * (
        np.float32(1.0 / 120.0) + a2 * (np.float32(-1.0 / 5040.0) + a2 * np.float32(
            1.0 / 362880.0)))))
    cs = np.float32(1.0) + a2 * (np.float32(-0.5) + a2 * (np.float32(1.0 / 24.0) + a2 * (
        np.float32(-1.0 / 720.0) + a2 * np.float32(1.0 / 40320.0))))
    # rotating (cos a, sin a) by qi quarter turns (qi in 0..4): swap for odd qi, then the signs
    # (cos < 0 in quarters 1 and 2, sin < 0 in 2 and 3) as exact multiplications by +-1, which
    # keep the loop free of branches
    odd = (qi & 1) == 1
    c = sn if odd else cs
    s = cs if odd else sn
    c = c * np.float32(1 - 2 * (((qi + 1) >> 1) & 1))
    s = s * np.float32(1 - 2 * ((qi >> 1) & 1))
    r = np.float32(math.sqrt(np.float32(-2.0) * _log_f32(u)))
    return r * c, r * s


@njit(**_JIT)
def _fill_normal(key, out):
    """Fill ``out`` (n,) with standard normal draws from the stream ``key`` (Box-Muller).

    Parameters
    ----------
    key : uint64
    out : float array (n,), written

    Notes
    -----
    Output ``q < h = ceil(n / 2)`` of the stream gives two 24-bit uniforms, ``u = (a + 1) 2**-24``
    in (0, 1] (bits 40-63) and ``v = b 2**-24`` (bits 16-39); ``out[q] = r cos(2 pi v)`` and
    ``out[h + q] = r sin(2 pi v)`` with ``r = sqrt(-2 log u)``. float32: polynomial log and
    sine/cosine on a quarter turn (errors about 1e-7), vectorized; float64: ``math`` functions.
    |draws| <= sqrt(2 log 2**24) = 5.77 (a Gaussian exceeds it with probability 8e-9).
    """
    n = out.shape[0]
    half = (n + 1) // 2
    mask24 = np.uint64(0xFFFFFF)
    if out.itemsize == 4:
        first = out[:half]
        second = out[half:]     # separate views: an index half + q kept this from vectorizing
        for q in range(n - half):
            c, s = _box_muller_f32(_splitmix64(key, np.uint64(q)))
            first[q] = c
            second[q] = s
        if n - half < half:              # odd n: the last pair's sine is not used
            c, s = _box_muller_f32(_splitmix64(key, np.uint64(half - 1)))
            out[half - 1] = c
        return
    inv24d = 1.0 / 16777216.0
    for q in range(half):
        z = _splitmix64(key, np.uint64(q))
        u = np.float64((z >> np.uint64(40)) + np.uint64(1)) * inv24d
        v = np.float64((z >> np.uint64(16)) & mask24) * inv24d
        r = math.sqrt(-2.0 * math.log(u))
        out[q] = r * math.cos(2.0 * math.pi * v)
        if half + q < n:
            out[half + q] = r * math.sin(2.0 * math.pi * v)
