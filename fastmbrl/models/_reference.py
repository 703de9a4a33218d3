"""NumPy twins of ``fastmbrl.models._kernels`` (same names and signatures).

The ground truth of the one model step, and what runs when ``FASTMBRL_PUREPYTHON=1``. Written with
whole-array NumPy operations in the order of ``fastmbrl.models.arrays``' module docstring; the
bounded log-variance is taken through the softplus definition (the kernels use its closed form).
Scratch arguments are written where the kernels write them (``x_buf``, ``y_buf``, ``std_buf``) or
left unused.
"""
import numpy as np

from fastmbrl.nn._numba_reference import _mlp_forward_flat
from fastmbrl.nn._reference import _softplus


def _model_inputs(obs, act, order, identity, plain_idx, angle_idx, in_mean, in_std, x_out):
    """Reference normalised network input of rows ``order`` (or all rows) into ``x_out``."""
    rows = np.arange(x_out.shape[0]) if identity else order
    o = obs[rows]
    x = np.concatenate([o[:, plain_idx], np.sin(o[:, angle_idx]), np.cos(o[:, angle_idx]),
                        act[rows]], axis=1)
    x_out[...] = (x - in_mean) / in_std


def _bounded_var(y, max_logvar, min_logvar, take_sqrt, ebuf, var_out):
    """Reference ``exp(min + softplus(max - softplus(max - raw) - min))`` (or its square root)."""
    d_out = var_out.shape[1]
    raw = y[:, d_out:]
    lv = max_logvar - _softplus(max_logvar - raw)
    lv = min_logvar + _softplus(lv - min_logvar)
    var_out[...] = np.exp(0.5 * lv) if take_sqrt else np.exp(lv)


def _model_step_grouped(obs, act, order, block_starts, block_members, noise, flat, layer_dims,
                        ensemble_size, activation, plain_idx, angle_idx, delta_mask, in_mean,
                        in_std, out_mean, out_std, max_logvar, min_logvar, x_buf, y_buf, std_buf,
                        h0, h1, ebuf, next_obs_out, reward_out):
    """Reference of the grouped model step; see ``fastmbrl.models._kernels._model_step_grouped``."""
    d_obs = obs.shape[1]
    _model_inputs(obs, act, order, False, plain_idx, angle_idx, in_mean, in_std, x_buf)
    for k in range(len(block_members)):
        lo, hi = block_starts[k], block_starts[k + 1]
        if hi > lo:
            _mlp_forward_flat(flat, layer_dims, ensemble_size, block_members[k], activation,
                              x_buf[lo:hi], y_buf[lo:hi], h0, h1, ebuf)
    _bounded_var(y_buf, max_logvar, min_logvar, True, ebuf, std_buf)
    d_out = out_mean.shape[0]
    sample = out_mean + out_std * (y_buf[:, :d_out] + std_buf * noise[order])
    next_obs_out[order] = sample[:, :d_obs] + np.where(delta_mask, obs[order], 0.0)
    if d_out > d_obs:
        reward_out[order] = sample[:, d_obs]


def _group_rows(members, ensemble_size, order_out, block_starts_out, block_members_out):
    """Reference stable grouping of the rows by member (see the kernel)."""
    order_out[...] = np.argsort(members, kind="stable")
    block_starts_out[0] = 0
    block_starts_out[1:] = np.cumsum(np.bincount(members, minlength=ensemble_size))
    block_members_out[...] = np.arange(ensemble_size)


def _model_step(obs, act, members, noise, flat, layer_dims, ensemble_size, activation, plain_idx,
                angle_idx, delta_mask, in_mean, in_std, out_mean, out_std, max_logvar, min_logvar,
                order_buf, block_starts, block_members, x_buf, y_buf, std_buf, h0, h1, ebuf,
                next_obs_out, reward_out):
    """Reference of the per-row-member model step; see ``fastmbrl.models._kernels._model_step``."""
    _group_rows(members, ensemble_size, order_buf, block_starts, block_members)
    _model_step_grouped(obs, act, order_buf, block_starts, block_members, noise, flat, layer_dims,
                        ensemble_size, activation, plain_idx, angle_idx, delta_mask, in_mean,
                        in_std, out_mean, out_std, max_logvar, min_logvar, x_buf, y_buf, std_buf,
                        h0, h1, ebuf, next_obs_out, reward_out)


def _model_predict(obs, act, members, flat, layer_dims, ensemble_size, activation, plain_idx,
                   angle_idx, delta_mask, in_mean, in_std, out_mean, out_std, max_logvar,
                   min_logvar, x_buf, y_buf, h0, h1, ebuf, mean_out, var_out):
    """Reference per-member mean and variance; see ``fastmbrl.models._kernels._model_predict``."""
    d_obs = obs.shape[1]
    d_out = out_mean.shape[0]
    _model_inputs(obs, act, members, True, plain_idx, angle_idx, in_mean, in_std, x_buf)
    delta = np.zeros_like(mean_out[0])
    delta[:, :d_obs] = np.where(delta_mask, obs, 0.0)
    for m in range(len(members)):
        _mlp_forward_flat(flat, layer_dims, ensemble_size, members[m], activation, x_buf, y_buf,
                          h0, h1, ebuf)
        mean_out[m] = out_mean + out_std * y_buf[:, :d_out] + delta
        _bounded_var(y_buf, max_logvar, min_logvar, False, ebuf, var_out[m])
        var_out[m] *= out_std ** 2
