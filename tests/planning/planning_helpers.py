"""Model snapshots built by hand for the planning and agent tests."""
import numpy as np

from fastmbrl.models.arrays import ModelArrays
from fastmbrl.nn._flat import param_offsets


def random_arrays(d_obs=3, d_act=1, hidden=(16, 16), ensemble_size=5, members=None, activation=3,
                  has_reward=False, angle_dims=(), dtype=np.float64, seed=0, weight_scale=0.3):
    """A ModelArrays with random weights and normalisers (the work is that of a real model)."""
    rng = np.random.default_rng(seed)
    angle_mask = np.zeros(d_obs, dtype=bool)
    angle_mask[list(angle_dims)] = True
    d_in = d_obs + int(angle_mask.sum()) + d_act
    d_out = d_obs + int(has_reward)
    dims = np.array([d_in, *hidden, 2 * d_out], dtype=np.int64)
    flat = (rng.standard_normal(param_offsets(dims, ensemble_size)[-1]) * weight_scale).astype(dtype)
    delta_mask = np.ones(d_obs, dtype=bool)
    delta_mask[-1] = False
    return ModelArrays(
        flat=flat, layer_dims=dims, ensemble_size=ensemble_size, activation=activation,
        members=np.arange(ensemble_size) if members is None else np.asarray(members),
        angle_mask=angle_mask, delta_mask=delta_mask,
        in_mean=rng.standard_normal(d_in).astype(dtype) * 0.1,
        in_std=(1.0 + rng.random(d_in)).astype(dtype),
        out_mean=rng.standard_normal(d_out).astype(dtype) * 0.1,
        out_std=(0.5 + rng.random(d_out)).astype(dtype) * 0.3,
        max_logvar=np.full(d_out, 0.5, dtype=dtype), min_logvar=np.full(d_out, -5.0, dtype=dtype),
        has_reward=has_reward)


def linear_arrays(slopes, d_act=1, logvar=-60.0, has_reward=False, dtype=np.float64):
    """A mock ensemble whose member ``e`` computes ``next = s_e * obs + act`` (D_obs = D_act).

    Identity activation, one hidden layer of width D_obs + D_act carrying the input through, unit
    normalisers and delta_mask False, so the output mean is exactly the linear map. The log-variance
    output is the constant ``logvar`` (clamped by soft bounds far away), so the noise scale is
    known: ``std = exp(lv / 2)`` with ``lv = min_lv + softplus(max_lv - softplus(max_lv - logvar) -
    min_lv)``. With ``has_reward`` the reward head predicts ``sum(obs)`` for every member.
    """
    slopes = np.asarray(slopes, dtype=np.float64)
    ensemble_size = slopes.size
    d_obs = d_act
    d_in = d_obs + d_act
    d_out = d_obs + int(has_reward)
    dims = np.array([d_in, d_in, 2 * d_out], dtype=np.int64)
    w0 = np.zeros((ensemble_size, d_in, d_in))
    b0 = np.zeros((ensemble_size, d_in))
    w1 = np.zeros((ensemble_size, d_in, 2 * d_out))
    b1 = np.zeros((ensemble_size, 2 * d_out))
    for e in range(ensemble_size):
        w0[e] = np.eye(d_in)
        for k in range(d_obs):
            w1[e, k, k] = slopes[e]
            w1[e, d_obs + k, k] = 1.0
            if has_reward:
                w1[e, k, d_obs] = 1.0
        b1[e, d_out:] = logvar
    flat = np.concatenate([w0.ravel(), b0.ravel(), w1.ravel(), b1.ravel()]).astype(dtype)
    return ModelArrays(
        flat=flat, layer_dims=dims, ensemble_size=ensemble_size, activation=0,
        members=np.arange(ensemble_size), angle_mask=np.zeros(d_obs, dtype=bool),
        delta_mask=np.zeros(d_obs, dtype=bool), in_mean=np.zeros(d_in, dtype=dtype),
        in_std=np.ones(d_in, dtype=dtype), out_mean=np.zeros(d_out, dtype=dtype),
        out_std=np.ones(d_out, dtype=dtype), max_logvar=np.full(d_out, 0.5, dtype=dtype),
        min_logvar=np.full(d_out, -60.0, dtype=dtype), has_reward=has_reward)
