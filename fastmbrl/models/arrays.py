"""ModelArrays: everything compiled code needs to run a fitted GaussianEnsemble, as plain arrays.

This is the contract between ``fastmbrl.models`` (which produces it with
``GaussianEnsemble.arrays()``) and the compiled rollout in ``fastmbrl.planning`` (which consumes it).
``predict_from_arrays`` below is the NumPy reference of what one model step computes; the model's own
``predict`` and the Numba rollout are both tested against it.

One model step, for a batch of rows (obs (B, D_obs), act (B, D_act)):

1. network input, width D_in = (D_obs - n_angle) + 2 n_angle + D_act, in this order:
   ``[obs[:, ~angle_mask], sin(obs[:, angle_mask]), cos(obs[:, angle_mask]), act]``
2. normalise: ``x = (input - in_mean) / in_std``
3. ensemble MLP (flat layout of ``fastmbrl.nn._flat``), output width 2 D_out:
   ``mean_n = out[:, :D_out]``, ``raw = out[:, D_out:]``
4. soft log-variance bounds (PETS): ``lv = max_logvar - softplus(max_logvar - raw)``, then
   ``lv = min_logvar + softplus(lv - min_logvar)``
5. de-normalise: ``mean = out_mean + out_std * mean_n``, ``var = out_std**2 * exp(lv)``
6. targets: columns 0..D_obs-1 are the next observation, as a change where ``delta_mask`` is set
   (``next = obs + mean``) and directly elsewhere; column D_obs (present when ``has_reward``) is the
   reward predicted by the learned reward head.
"""
from typing import NamedTuple

import numpy as np

from fastmbrl.nn._flat import unflatten


class ModelArrays(NamedTuple):
    """Plain-array snapshot of a GaussianEnsemble (see the module docstring for the maths).

    Attributes
    ----------
    flat : float array (n_params,)        all members' weights, layout of fastmbrl.nn._flat
    layer_dims : int64 array (L+1,)       (D_in, hidden..., 2 * D_out)
    n_members : int                       E, members stored in ``flat``
    activation : int                      hidden activation code (fastmbrl._config.ACTIVATIONS)
    members : int64 array (M,)            members to use when planning (the elites), M <= E
    angle_mask : bool array (D_obs,)      observation dims fed to the network as (sin, cos)
    delta_mask : bool array (D_obs,)      observation dims predicted as a change
    in_mean, in_std : float (D_in,)       input normalisation
    out_mean, out_std : float (D_out,)    target normalisation
    max_logvar, min_logvar : float (D_out,)  soft log-variance bounds (normalised units)
    has_reward : bool                     True if the last target column is a learned reward
    """

    flat: np.ndarray
    layer_dims: np.ndarray
    n_members: int
    activation: int
    members: np.ndarray
    angle_mask: np.ndarray
    delta_mask: np.ndarray
    in_mean: np.ndarray
    in_std: np.ndarray
    out_mean: np.ndarray
    out_std: np.ndarray
    max_logvar: np.ndarray
    min_logvar: np.ndarray
    has_reward: bool


def _softplus(x):
    return np.logaddexp(0.0, x)


def _activate(z, code):
    if code == 0:
        return z
    if code == 1:
        return np.maximum(z, 0)
    if code == 2:
        return np.tanh(z)
    if code == 3:
        return z / (1 + np.exp(-z))
    raise ValueError(f"activation: unknown code {code}")


def model_inputs(arrays, obs, act):
    """Step 1: the network input (B, D_in) for raw obs (B, D_obs) and act (B, D_act)."""
    m = arrays.angle_mask
    return np.concatenate([obs[:, ~m], np.sin(obs[:, m]), np.cos(obs[:, m]), act], axis=1)


def predict_from_arrays(arrays, obs, act, members=None):
    """Reference model step: per-member Gaussian over the targets, in raw units.

    Parameters
    ----------
    arrays : ModelArrays
    obs : float array (B, D_obs)
    act : float array (B, D_act)
    members : int array (M,), optional; default all E members

    Returns
    -------
    next_mean : (M, B, D_obs)   mean of the next observation (change already added back)
    next_var : (M, B, D_obs)    its variance
    reward_mean, reward_var : (M, B) each, or None when the model has no reward head
    """
    dims = arrays.layer_dims
    params = unflatten(arrays.flat, dims, arrays.n_members)
    members = np.arange(arrays.n_members) if members is None else np.asarray(members)
    x = (model_inputs(arrays, obs, act) - arrays.in_mean) / arrays.in_std
    n_layers = len(dims) - 1
    outs = []
    for e in members:
        h = x
        for layer in range(n_layers):
            h = h @ params[2 * layer][e] + params[2 * layer + 1][e]
            if layer < n_layers - 1:
                h = _activate(h, arrays.activation)
        outs.append(h)
    out = np.stack(outs)                                   # (M, B, 2 D_out)
    d_out = dims[-1] // 2
    lv = arrays.max_logvar - _softplus(arrays.max_logvar - out[..., d_out:])
    lv = arrays.min_logvar + _softplus(lv - arrays.min_logvar)
    mean = arrays.out_mean + arrays.out_std * out[..., :d_out]
    var = arrays.out_std ** 2 * np.exp(lv)
    d_obs = obs.shape[1]
    next_mean = mean[..., :d_obs] + np.where(arrays.delta_mask, obs, 0.0)
    next_var = var[..., :d_obs]
    if arrays.has_reward:
        return next_mean, next_var, mean[..., d_obs], var[..., d_obs]
    return next_mean, next_var, None, None
