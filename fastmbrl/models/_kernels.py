"""The one compiled model step of a GaussianEnsemble (Numba): inputs -> next-state Gaussian/sample.

Every use of the learned model goes through these kernels: ``GaussianEnsemble.predict`` and
``sample``, ``ModelEnv.step`` and the planners' rollout (``fastmbrl.planning._kernels``, which calls
them from its own compiled horizon loop). The NumPy twins with the same names and signatures are in
``fastmbrl.models._reference``.

Design
------
* One model step, for rows ``obs (B, D_obs)``, ``act (B, D_act)`` (the maths is written out in
  ``fastmbrl.models.arrays``): network input
  ``[obs[plain], sin(obs[angle]), cos(obs[angle]), act]``, normalised; one ensemble member's forward pass (``fastmbrl.nn._numba._mlp_forward_flat``);
  soft log-variance bounds; de-normalisation; the delta added back on delta columns.
* ``_model_step``: one member per row (``members[row]``), one forward pass per row (not E), and the
  reparameterized sample ``next = mean + std * noise`` in raw units (noise 0 gives the mean). It
  sorts the rows by member (a counting sort into the caller's ``order_buf``) and calls
  ``_model_step_grouped``.
* ``_model_step_grouped`` is the hot-path specialisation the planners' rollout calls directly: the
  rows arrive already grouped by member (positions ``block_starts[k]..block_starts[k+1]`` of
  ``order`` run member ``block_members[k]``), so each member runs one contiguous BLAS block. The
  rollout's per-step row permutation is such an ``order`` (ts1 / tsinf).
* ``_model_predict``: the mean and variance of every row under each of a set of members,
  (M, B, D_out) (what ``predict`` and the rollout's "expectation" propagation need).
* Who allocates: the caller, always (Python wrappers in ``fastmbrl.models.arrays`` once per call,
  the rollout once per shape). Nothing here allocates, validates or draws random numbers. Loops:
  the input gather is column by column (one ``1 / std`` per column), the network one member block at
  a time, the variance bound in one contiguous vectorizable pass, the sample scatter row by row.
* The bounded variance is taken in closed form (one exp, no log):
  ``exp(min + softplus(max - softplus(max - raw) - min))``
  ``= exp(min) + exp(max) / (1 + exp(max - raw))``.
  Its ``exp(min)``, ``exp(max)`` tiled over 64 rows live at the start of ``ebuf``.
* A VJP can be added beside these kernels: the forward quantities it needs (``x_buf``, ``y_buf``,
  ``std_buf``, ``order``) are all caller-owned buffers.
"""
import math

import numpy as np
from numba import njit

from fastmbrl.nn._numba import (_activate, _exp_f32, _exp_inplace, _member_layer,
                                _mlp_forward_flat)

_JIT = dict(cache=True, nogil=True, fastmath=True, error_model="numpy")


@njit(**_JIT)
def _gather_scaled(src, cols, use_cols, c0, n_cols, order, identity, in_mean, in_std, x_out):
    """``x_out[j, c0 + k] = (src[row_j, col_k] - in_mean) / in_std`` for ``k < n_cols``.

    ``col_k = cols[k]`` when ``use_cols``, else ``k``; ``row_j = order[j]`` unless ``identity``.
    Column by column, so each column's ``1 / std`` is taken once and the inner loop has no branch
    on the column's kind.
    """
    n_rows = x_out.shape[0]
    for k in range(n_cols):
        c = c0 + k
        col = cols[k] if use_cols else k
        mu = in_mean[c]
        inv = 1.0 / in_std[c]
        for j in range(n_rows):
            i = j if identity else order[j]
            x_out[j, c] = (src[i, col] - mu) * inv


@njit(**_JIT)
def _model_inputs(obs, act, order, identity, plain_idx, angle_idx, in_mean, in_std, x_out):
    """Normalised network input of rows ``order[j]`` (or ``j`` when ``identity``) into ``x_out[j]``.

    Parameters
    ----------
    obs : float array (B, D_obs)
    act : float array (B, D_act)
    order : int64 array (B,)
        Row gathered into each position (ignored when ``identity``).
    identity : bool
    plain_idx, angle_idx : int64 arrays
        Observation columns fed directly and as (sin, cos).
    in_mean, in_std : float arrays (D_in,)
    x_out : float array (B, D_in), written: ``[obs[plain], sin(obs[angle]), cos(obs[angle]), act]``
        normalised
    """
    n_rows = x_out.shape[0]
    n_plain = plain_idx.shape[0]
    n_angle = angle_idx.shape[0]
    _gather_scaled(obs, plain_idx, True, 0, n_plain, order, identity, in_mean, in_std, x_out)
    for k in range(n_angle):
        cs = n_plain + k
        cc = n_plain + n_angle + k
        mu_s, inv_s = in_mean[cs], 1.0 / in_std[cs]
        mu_c, inv_c = in_mean[cc], 1.0 / in_std[cc]
        col = angle_idx[k]
        for j in range(n_rows):
            i = j if identity else order[j]
            v = obs[i, col]
            x_out[j, cs] = (math.sin(v) - mu_s) * inv_s
            x_out[j, cc] = (math.cos(v) - mu_c) * inv_c
    _gather_scaled(act, plain_idx, False, n_plain + 2 * n_angle, act.shape[1], order, identity,
                   in_mean, in_std, x_out)


# rows of the tiled exp(min_logvar), exp(max_logvar) that _bounded_var divides against
_TILE_ROWS = 64


@njit(**_JIT)
def _bounded_var(y, max_logvar, min_logvar, take_sqrt, ebuf, var_out):
    """Normalised variance ``exp(lv)`` (or its square root) of the soft-bounded log-variance.

    Parameters
    ----------
    y : float array (B, 2 D_out)
        Network outputs; columns ``D_out..`` are the raw log-variances.
    max_logvar, min_logvar : float arrays (D_out,)
    take_sqrt : bool
        Write the standard deviation ``exp(lv / 2)`` instead.
    ebuf : float array (>= 2 min(B, 64) D_out,), scratch (tiled ``exp(min)``, ``exp(max)``)
    var_out : float array (B, D_out), C-contiguous, written

    Notes
    -----
    ``lv = min + softplus(max - softplus(max - raw) - min)`` (PETS' soft bounds) and
    ``exp(lv) = exp(min) + exp(max) / (1 + exp(max - raw))``. The exps run in one vectorizable
    pass over ``var_out``, the division (and square root) in one more, 64 rows at a time against
    ``exp(min)``, ``exp(max)`` tiled over 64 rows (the loops vectorize over the flat index).
    """
    n_rows, d_out = var_out.shape
    n_flat = n_rows * d_out
    n_tile = min(n_rows, _TILE_ROWS) * d_out
    min_tiled = ebuf[:n_tile]
    max_tiled = ebuf[n_tile:2 * n_tile]
    for d in range(d_out):
        e_min = np.exp(min_logvar[d])
        e_max = np.exp(max_logvar[d])
        for q in range(d, n_tile, d_out):
            min_tiled[q] = e_min
            max_tiled[q] = e_max
    for j in range(n_rows):
        for d in range(d_out):
            var_out[j, d] = max_logvar[d] - y[j, d_out + d]
    flat = var_out.reshape(-1)
    _exp_inplace(flat, ebuf[2 * n_tile:])
    for base in range(0, n_flat, n_tile):
        block = flat[base:min(base + n_tile, n_flat)]
        if take_sqrt:
            for q in range(block.shape[0]):
                block[q] = math.sqrt(min_tiled[q] + max_tiled[q] / (1.0 + block[q]))
        else:
            for q in range(block.shape[0]):
                block[q] = min_tiled[q] + max_tiled[q] / (1.0 + block[q])


@njit(**_JIT)
def _write_step_outputs(obs, order, noise, delta_mask, out_mean, out_std, y, std, next_obs_out,
                        reward_out):
    """The reparameterized sample in raw units, scattered back to the callers' row order.

    Row ``j`` of ``y`` (network means, normalised) and ``std`` (bounded standard deviations) is
    row ``i = order[j]`` of the batch: ``v = out_mean + out_std (y + std noise[i])``; observation
    columns get ``obs[i]`` added where ``delta_mask`` is set and go to ``next_obs_out[i]``, column
    D_obs (the learned reward) to ``reward_out[i]``.
    """
    d_obs = obs.shape[1]
    d_out = out_mean.shape[0]
    for j in range(obs.shape[0]):
        i = order[j]
        for d in range(d_out):
            v = out_mean[d] + out_std[d] * (y[j, d] + std[j, d] * noise[i, d])
            if d < d_obs:
                if delta_mask[d]:
                    v += obs[i, d]
                next_obs_out[i, d] = v
            else:
                reward_out[i] = v


@njit(**_JIT)
def _model_step_grouped(obs, act, order, block_starts, block_members, noise, flat, layer_dims,
                        ensemble_size, activation, plain_idx, angle_idx, delta_mask, in_mean,
                        in_std, out_mean, out_std, max_logvar, min_logvar, x_buf, y_buf, std_buf,
                        h0, h1, ebuf, next_obs_out, reward_out):
    """One sampled model step with the rows already grouped by member (the rollout's layout).

    Parameters
    ----------
    obs : float array (B, D_obs)
    act : float array (B, D_act)
    order : int64 array (B,)
        ``order[j]`` is the row at position ``j``; positions
        ``block_starts[k] .. block_starts[k+1]`` run member ``block_members[k]``.
    block_starts : int64 array (K+1,), nondecreasing, ``block_starts[K] = B``
    block_members : int64 array (K,), members in ``[0, E)``
    noise : float array (B, D_out)
        Standard normal draws, indexed by row (not position); 0 gives the mean.
    flat, layer_dims, ensemble_size, activation :
        The ensemble network (``fastmbrl.models.arrays.ModelArrays``).
    plain_idx, angle_idx : int64 arrays
    delta_mask : bool array (D_obs,)
    in_mean, in_std : float arrays (D_in,)
    out_mean, out_std, max_logvar, min_logvar : float arrays (D_out,)
    x_buf, y_buf, std_buf : float arrays (B, D_in), (B, 2 D_out), (B, D_out), scratch; written
        with the normalised input, the network output (by position) and the normalised std.
    h0, h1 : float arrays (>= B max(hidden widths),), scratch
    ebuf : float array (>= 2 min(B, 64) D_out,), scratch
    next_obs_out : float array (B, D_obs), written
    reward_out : float array (B,), written when D_out > D_obs (learned reward), else untouched

    Notes
    -----
    Row ``i`` run by member ``e``: network output ``(mu, raw)``, ``std`` from the bounded
    log-variance, ``y = out_mean + out_std * (mu + std * eps_i)``; ``next = obs + y`` on delta
    columns, ``y`` elsewhere; column D_obs of ``y`` is the reward. Chua et al. (2018), Sec. 4-5.
    """
    _model_inputs(obs, act, order, False, plain_idx, angle_idx, in_mean, in_std, x_buf)
    for k in range(block_members.shape[0]):
        lo = block_starts[k]
        hi = block_starts[k + 1]
        if hi > lo:
            _mlp_forward_flat(flat, layer_dims, ensemble_size, block_members[k], activation,
                              x_buf[lo:hi], y_buf[lo:hi], h0, h1, ebuf)
    _bounded_var(y_buf, max_logvar, min_logvar, True, ebuf, std_buf)
    _write_step_outputs(obs, order, noise, delta_mask, out_mean, out_std, y_buf, std_buf,
                        next_obs_out, reward_out)


@njit(**_JIT)
def _group_rows(members, ensemble_size, order_out, block_starts_out, block_members_out):
    """Counting sort of the rows by member: ``order_out`` lists member 0's rows, then member 1's...

    Parameters
    ----------
    members : int64 array (B,), values in ``[0, E)``
    ensemble_size : int
        E.
    order_out : int64 array (B,), written (stable: rows keep their order within a member)
    block_starts_out : int64 array (E+1,), written
    block_members_out : int64 array (E,), written with ``0..E-1``
    """
    for e in range(ensemble_size + 1):
        block_starts_out[e] = 0
    for i in range(members.shape[0]):
        block_starts_out[members[i] + 1] += 1
    for e in range(ensemble_size):
        block_starts_out[e + 1] += block_starts_out[e]
        block_members_out[e] = e
    # block_starts_out[e] doubles as member e's write cursor, then is restored
    for i in range(members.shape[0]):
        e = members[i]
        order_out[block_starts_out[e]] = i
        block_starts_out[e] += 1
    for e in range(ensemble_size, 0, -1):
        block_starts_out[e] = block_starts_out[e - 1]
    block_starts_out[0] = 0


@njit(**_JIT)
def _model_step(obs, act, members, noise, flat, layer_dims, ensemble_size, activation, plain_idx,
                angle_idx, delta_mask, in_mean, in_std, out_mean, out_std, max_logvar, min_logvar,
                order_buf, block_starts, block_members, x_buf, y_buf, std_buf, h0, h1, ebuf,
                next_obs_out, reward_out):
    """One reparameterized model step, the member of each row given by ``members[row]``.

    Parameters
    ----------
    obs : float array (B, D_obs)
    act : float array (B, D_act)
    members : int64 array (B,), values in ``[0, E)``
    noise : float array (B, D_out)
        Standard normal draws; ``next = mean + std * noise`` in raw units (0 gives the mean).
    flat, layer_dims, ensemble_size, activation, plain_idx, angle_idx, delta_mask, in_mean,
    in_std, out_mean, out_std, max_logvar, min_logvar :
        The model (see ``_model_step_grouped``).
    order_buf : int64 array (B,), scratch (rows sorted by member)
    block_starts : int64 array (E+1,), scratch
    block_members : int64 array (E,), scratch
    x_buf, y_buf, std_buf, h0, h1, ebuf : scratch of ``_model_step_grouped``
    next_obs_out : float array (B, D_obs), written
    reward_out : float array (B,), written when the model has a reward head (D_out > D_obs)

    Notes
    -----
    One member's forward pass per row: the rows are grouped by member (``_group_rows``) and each
    member runs once on its contiguous block.
    """
    _group_rows(members, ensemble_size, order_buf, block_starts, block_members)
    _model_step_grouped(obs, act, order_buf, block_starts, block_members, noise, flat, layer_dims,
                        ensemble_size, activation, plain_idx, angle_idx, delta_mask, in_mean,
                        in_std, out_mean, out_std, max_logvar, min_logvar, x_buf, y_buf, std_buf,
                        h0, h1, ebuf, next_obs_out, reward_out)


@njit(**_JIT)
def _model_predict(obs, act, members, flat, layer_dims, ensemble_size, activation, plain_idx,
                   angle_idx, delta_mask, in_mean, in_std, out_mean, out_std, max_logvar,
                   min_logvar, x_buf, y_buf, h0, h1, ebuf, mean_out, var_out):
    """Mean and variance of every row's targets under each member of ``members``, in raw units.

    Parameters
    ----------
    obs : float array (B, D_obs)
    act : float array (B, D_act)
    members : int64 array (M,), values in ``[0, E)``
    flat, ..., min_logvar :
        The model (see ``_model_step_grouped``).
    x_buf, y_buf : float arrays (B, D_in), (B, 2 D_out), scratch
    h0, h1 : float arrays (>= B max(hidden widths),), scratch
    ebuf : float array (>= 2 min(B, 64) D_out,), scratch
    mean_out, var_out : float arrays (M, B, D_out), C-contiguous, written
        Columns ``< D_obs``: the next observation (the change added back on delta columns);
        column D_obs (learned reward head): the reward.

    Notes
    -----
    ``mean = out_mean + out_std * mu (+ obs)``, ``var = out_std**2 exp(lv)`` with ``lv`` the
    soft-bounded log-variance (see ``_bounded_var``).
    """
    n_rows = obs.shape[0]
    d_obs = obs.shape[1]
    d_out = out_mean.shape[0]
    _model_inputs(obs, act, members, True, plain_idx, angle_idx, in_mean, in_std, x_buf)
    for m in range(members.shape[0]):
        _mlp_forward_flat(flat, layer_dims, ensemble_size, members[m], activation, x_buf, y_buf,
                          h0, h1, ebuf)
        var_m = var_out[m]
        _bounded_var(y_buf, max_logvar, min_logvar, False, ebuf, var_m)
        for i in range(n_rows):
            for d in range(d_out):
                v = out_mean[d] + out_std[d] * y_buf[i, d]
                if d < d_obs and delta_mask[d]:
                    v += obs[i, d]
                mean_out[m, i, d] = v
                var_m[i, d] *= out_std[d] * out_std[d]


# ---------------------------------------------------------------- the model step's VJP
# Design of the backward pass (course notes 5.4: backpropagation through the reparameterized model)
# * Split in two calls around the reward gradient: ``_model_step_tape`` is the grouped model step
#   that also records the tape, ``_model_step_vjp`` runs the VJP from that tape. The caller's reward
#   gradient (``reward_grad_fn(obs, act, next_obs)``) needs ``next_obs``, so it runs in between.
# * The tape of one step is all the backward pass reads besides the step's inputs: the hidden
#   pre-activations ``z_tape`` (B * sum(hidden widths), layer after layer, each layer's block laid
#   out (B, D_l) by position) and the network output ``y_tape`` (B, 2 D_out). No weight gradients
#   are taken, so the layer inputs (activations) are not kept: ``act'(z)`` and ``W^T`` suffice.
#   Per step of an h-step backward pass: obs, act, noise (the inputs), the row order and block
#   bounds, z_tape and y_tape: B (D_obs + D_act + D_out + sum(hidden) + 2 D_out) floats.
# * Rows are grouped by member exactly as in ``_model_step_grouped`` (``_group_rows``), so each
#   member runs one contiguous BLAS block forward (``x W + b``) and backward (``g W^T``).
# * The caller allocates everything; nothing here allocates, validates or draws random numbers.


@njit(**_JIT)
def _hidden_width_sum(layer_dims):
    """Sum of the hidden widths ``D_1 + ... + D_{L-1}`` (the tape's pre-activation columns)."""
    s = 0
    for layer in range(1, layer_dims.shape[0] - 1):
        s += layer_dims[layer]
    return s


@njit(**_JIT)
def _bias_tape_activation(z, b, activation, h_out):
    """``z += b`` in place (the pre-activation kept on the tape) and ``h_out = act(z)``.

    Parameters
    ----------
    z : float array (rows, D), C-contiguous; overwritten with ``z + b``
    b : float array (D,)
    activation : int, 0 identity, 1 relu, 2 tanh, 3 silu
    h_out : float array (rows, D), C-contiguous, written

    Notes
    -----
    float32 SiLU uses the vectorizable polynomial exponential of ``fastmbrl.nn._numba`` (the same
    one the inference forward pass uses, so the step's values agree with ``_model_step``).
    """
    rows, d = z.shape
    if activation == 3 and z.itemsize == 4:
        one = np.float32(1.0)
        for i in range(rows):
            for j in range(d):
                v = z[i, j] + b[j]
                z[i, j] = v
                h_out[i, j] = v / (one + _exp_f32(-v))
        return
    for i in range(rows):
        for j in range(d):
            v = z[i, j] + b[j]
            z[i, j] = v
            h_out[i, j] = _activate(v, activation)


@njit(**_JIT)
def _activation_grad_inplace(g, z, activation):
    """``g *= act'(z)`` in place (the backward of one hidden activation).

    Parameters
    ----------
    g : float array (rows, D), C-contiguous; overwritten
    z : float array (rows, D), the pre-activation
    activation : int, 0 identity, 1 relu (derivative 0 at 0), 2 tanh, 3 silu

    Notes
    -----
    ``silu'(z) = s (1 + z (1 - s))`` with ``s = sigmoid(z)``; ``tanh' = 1 - tanh^2``.
    """
    rows, d = g.shape
    if activation == 0:
        return
    if activation == 3 and g.itemsize == 4:
        one = np.float32(1.0)
        for i in range(rows):
            for j in range(d):
                v = z[i, j]
                s = one / (one + _exp_f32(-v))
                g[i, j] *= s * (one + v * (one - s))
        return
    for i in range(rows):
        for j in range(d):
            v = z[i, j]
            if activation == 1:
                if v <= 0.0:
                    g[i, j] = 0.0
            elif activation == 2:
                t = math.tanh(v)
                g[i, j] *= 1.0 - t * t
            else:
                s = 1.0 / (1.0 + math.exp(-v))
                g[i, j] *= s * (1.0 + v * (1.0 - s))


@njit(**_JIT)
def _model_step_tape(obs, act, order, block_starts, block_members, noise, flat, layer_dims,
                     ensemble_size, activation, plain_idx, angle_idx, delta_mask, in_mean, in_std,
                     out_mean, out_std, max_logvar, min_logvar, x_buf, z_tape, y_tape, std_buf,
                     h_buf, ebuf, next_obs_out, reward_out):
    """The grouped model step of ``_model_step_grouped`` that also records the backward tape.

    Parameters
    ----------
    obs, act, order, block_starts, block_members, noise, flat, ..., min_logvar :
        As in ``_model_step_grouped`` (rows grouped by member through ``order``).
    x_buf : float array (B, D_in), scratch (the normalised input)
    z_tape : float array (>= B * sum(hidden widths),), written: hidden pre-activations, layer l's
        block ``(B, D_l)`` (by position) starting at ``B * (D_1 + ... + D_{l-1})``
    y_tape : float array (B, 2 D_out), written: the network output by position
    std_buf : float array (B, D_out), scratch (the normalised std)
    h_buf : float array (>= B * max(hidden widths),), scratch (one hidden activation)
    ebuf : float array (>= 2 min(B, 64) D_out,), scratch
    next_obs_out : float array (B, D_obs), written
    reward_out : float array (B,), written when D_out > D_obs

    Notes
    -----
    The same values as ``_model_step_grouped`` (one member per row, ``next = (obs +) out_mean +
    out_std (mu + std eps)``); the pre-activations are kept, the activations overwritten.
    """
    n_rows = obs.shape[0]
    n_layers = layer_dims.shape[0] - 1
    _model_inputs(obs, act, order, False, plain_idx, angle_idx, in_mean, in_std, x_buf)
    for k in range(block_members.shape[0]):
        lo = block_starts[k]
        hi = block_starts[k + 1]
        if hi <= lo:
            continue
        member = block_members[k]
        rows = hi - lo
        offset = 0
        tape_off = 0
        src = x_buf[lo:hi]
        for layer in range(n_layers):
            fan_out = layer_dims[layer + 1]
            w, b, offset = _member_layer(flat, layer_dims, ensemble_size, member, layer, offset)
            if layer == n_layers - 1:
                dst = y_tape[lo:hi]
                np.dot(src, w, dst)
                for i in range(rows):
                    for j in range(fan_out):
                        dst[i, j] += b[j]
            else:
                start = tape_off + lo * fan_out
                z = z_tape[start:start + rows * fan_out].reshape((rows, fan_out))
                np.dot(src, w, z)
                h = h_buf[:rows * fan_out].reshape((rows, fan_out))
                _bias_tape_activation(z, b, activation, h)
                src = h
                tape_off += n_rows * fan_out
    _bounded_var(y_tape, max_logvar, min_logvar, True, ebuf, std_buf)
    _write_step_outputs(obs, order, noise, delta_mask, out_mean, out_std, y_tape, std_buf,
                        next_obs_out, reward_out)


@njit(**_JIT)
def _model_step_vjp(obs, act, order, block_starts, block_members, noise, flat, layer_dims,
                    ensemble_size, activation, plain_idx, angle_idx, delta_mask, in_mean, in_std,
                    out_mean, out_std, max_logvar, min_logvar, z_tape, y_tape, d_next_obs,
                    d_reward, g_out, g0, g1, gx_buf, d_obs_out, d_act_out):
    """Vector-Jacobian product of one model step, from the tape of ``_model_step_tape``.

    Parameters
    ----------
    obs, act, order, block_starts, block_members, noise, flat, ..., min_logvar :
        Exactly as given to ``_model_step_tape`` for this step.
    z_tape, y_tape : float arrays, the tape ``_model_step_tape`` wrote
    d_next_obs : float array (B, D_obs)
        Cotangent of the sampled next observation (by row).
    d_reward : float array (B,)
        Cotangent of the learned reward (column D_obs of the sample); read only when D_out > D_obs
        (pass zeros when the reward comes from a reward function).
    g_out : float array (B, 2 D_out), scratch (cotangent of the network output, by position)
    g0, g1 : float arrays (>= B * max(hidden widths),), scratch
    gx_buf : float array (B, D_in), scratch (cotangent of the normalised input, by position)
    d_obs_out : float array (B, D_obs), written
    d_act_out : float array (B, D_act), written

    Notes
    -----
    With ``y = out_mean + out_std (mu + s eps)``, ``s = exp(lv / 2)`` and the soft bounds
    ``lv = min + softplus(max - softplus(max - raw) - min)``:
    ``dy/dmu = out_std``, ``dy/draw = out_std eps ds/draw`` with
    ``ds/draw = exp(max) a (1 - a) / (2 s)``, ``a = sigmoid(max - raw)`` (the closed form
    ``s^2 = exp(min) + exp(max) (1 - a)``). Then ``g W^T`` and ``act'(z)`` member block by block
    down to the normalised input, ``/ in_std``, and the input gather reversed: plain columns add to
    their observation dim, ``(sin, cos)`` columns add ``g_sin cos - g_cos sin``, the action
    columns give ``d_act``; delta dims add ``d_next_obs`` directly.
    """
    n_rows = obs.shape[0]
    d_obs = obs.shape[1]
    d_out = out_mean.shape[0]
    n_layers = layer_dims.shape[0] - 1
    n_plain = plain_idx.shape[0]
    n_angle = angle_idx.shape[0]
    # cotangent of the network output, by position
    for d in range(d_out):
        e_min = math.exp(min_logvar[d])
        e_max = math.exp(max_logvar[d])
        for j in range(n_rows):
            i = order[j]
            g = d_next_obs[i, d] if d < d_obs else d_reward[i]
            g = g * out_std[d]
            g_out[j, d] = g
            t = max_logvar[d] - y_tape[j, d_out + d]
            q = math.exp(-abs(t))
            a = 1.0 / (1.0 + q) if t >= 0.0 else q / (1.0 + q)     # sigmoid(t), stable
            s = math.sqrt(e_min + e_max * (1.0 - a))
            g_out[j, d_out + d] = g * noise[i, d] * e_max * a * (1.0 - a) / (2.0 * s)
    # back through each member's network, block by block
    hidden_total = _hidden_width_sum(layer_dims)
    for k in range(block_members.shape[0]):
        lo = block_starts[k]
        hi = block_starts[k + 1]
        if hi <= lo:
            continue
        member = block_members[k]
        rows = hi - lo
        src = g_out[lo:hi]
        tape_end = n_rows * hidden_total
        for layer in range(n_layers - 1, -1, -1):
            fan_in = layer_dims[layer]
            fan_out = layer_dims[layer + 1]
            offset = 0
            for prev in range(layer):
                offset += ensemble_size * (layer_dims[prev] + 1) * layer_dims[prev + 1]
            w_size = fan_in * fan_out
            w_start = offset + member * w_size
            w = flat[w_start:w_start + w_size].reshape((fan_in, fan_out))
            if layer == 0:
                dst = gx_buf[lo:hi]
            else:
                buf = g0 if layer % 2 == 0 else g1
                dst = buf[:rows * fan_in].reshape((rows, fan_in))
            np.dot(src, w.T, dst)
            if layer > 0:
                # dst is the cotangent of hidden layer ``layer - 1``'s activation (width fan_in)
                tape_end -= n_rows * fan_in
                start = tape_end + lo * fan_in
                z = z_tape[start:start + rows * fan_in].reshape((rows, fan_in))
                _activation_grad_inplace(dst, z, activation)
            src = dst
    # the input gather reversed, and the delta
    for i in range(n_rows):
        for d in range(d_obs):
            d_obs_out[i, d] = d_next_obs[i, d] if delta_mask[d] else 0.0
    for c in range(gx_buf.shape[1]):
        inv = 1.0 / in_std[c]
        if c < n_plain:
            col = plain_idx[c]
            for j in range(n_rows):
                i = order[j]
                d_obs_out[i, col] += gx_buf[j, c] * inv
        elif c < n_plain + n_angle:
            col = angle_idx[c - n_plain]
            for j in range(n_rows):
                i = order[j]
                d_obs_out[i, col] += gx_buf[j, c] * inv * math.cos(obs[i, col])
        elif c < n_plain + 2 * n_angle:
            col = angle_idx[c - n_plain - n_angle]
            for j in range(n_rows):
                i = order[j]
                d_obs_out[i, col] -= gx_buf[j, c] * inv * math.sin(obs[i, col])
        else:
            col = c - n_plain - 2 * n_angle
            for j in range(n_rows):
                i = order[j]
                d_act_out[i, col] = gx_buf[j, c] * inv
