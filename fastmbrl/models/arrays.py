"""ModelArrays: everything compiled code needs to run a fitted GaussianEnsemble, as plain arrays.

This is the input contract of the one compiled model step (``fastmbrl.models._kernels``, NumPy
twin in ``fastmbrl.models._reference``): ``GaussianEnsemble.arrays()`` produces it, and
``predict_from_arrays`` / ``step_from_arrays`` below (what ``GaussianEnsemble.predict/sample`` and
``ModelEnv.step`` call), and the planners' compiled rollout in ``fastmbrl.planning``, consume it.

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

from fastmbrl import backend


class ModelArrays(NamedTuple):
    """Plain-array snapshot of a GaussianEnsemble (see the module docstring for the maths).

    Attributes
    ----------
    flat : float array (n_params,)        all members' weights, layout of fastmbrl.nn._flat
    layer_dims : int64 array (L+1,)       (D_in, hidden..., 2 * D_out)
    ensemble_size : int                   E, members stored in ``flat``
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
    ensemble_size: int
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


def check_members(name, members, n_rows, ensemble_size):
    """``members`` as an int64 array (B,) of member indices; an int is repeated for every row.

    Raises
    ------
    ValueError
        Naming ``name``, unless every value is an integer in ``[0, ensemble_size)`` and there is one
        per row.
    """
    m = np.asarray(members)
    if m.ndim == 0:
        m = np.full(n_rows, m)
    if m.shape != (n_rows,) or m.dtype.kind not in "iu" or np.any(m < 0) \
            or np.any(m >= ensemble_size):
        raise ValueError(f"{name}: expected integers in [0, {ensemble_size}) for each of {n_rows} "
                         f"rows, shape ({n_rows},), got {members!r}")
    return m.astype(np.int64)


def _model_kernels():
    """The compiled model-step kernels, or their NumPy twins under FASTMBRL_PUREPYTHON=1."""
    return backend.kernels("fastmbrl.models._kernels")


def _arg(a, dtype=None):
    """A C-contiguous, writable array (Numba types read-only arrays apart: one more compilation)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.writeable else a.copy()


def kernel_model_args(arrays):
    """The model arguments of the model-step kernels, in their order, all in the weights' dtype.

    Returns
    -------
    tuple
        ``(flat, layer_dims, ensemble_size, activation, plain_idx, angle_idx, delta_mask,
        in_mean, in_std, out_mean, out_std, max_logvar, min_logvar)``
    """
    dtype = np.asarray(arrays.flat).dtype
    angle = np.asarray(arrays.angle_mask, dtype=bool)
    return (_arg(arrays.flat), _arg(arrays.layer_dims, np.int64), int(arrays.ensemble_size),
            int(arrays.activation), np.flatnonzero(~angle).astype(np.int64),
            np.flatnonzero(angle).astype(np.int64), _arg(arrays.delta_mask, bool),
            _arg(arrays.in_mean, dtype), _arg(arrays.in_std, dtype), _arg(arrays.out_mean, dtype),
            _arg(arrays.out_std, dtype), _arg(arrays.max_logvar, dtype),
            _arg(arrays.min_logvar, dtype))


def _scratch(layer_dims, n_rows, d_out, dtype):
    """x_buf, y_buf, h0, h1, ebuf for ``n_rows`` rows (sizes of the kernels' docstrings)."""
    dims = np.asarray(layer_dims)
    max_hidden = int(max(dims[1:-1])) if len(dims) > 2 else 1
    return (np.empty((n_rows, int(dims[0])), dtype), np.empty((n_rows, int(dims[-1])), dtype),
            np.empty(n_rows * max_hidden, dtype), np.empty(n_rows * max_hidden, dtype),
            np.empty(2 * n_rows * max(max_hidden, d_out), dtype))


def predict_from_arrays(arrays, obs, act, members=None):
    """Per-member Gaussian over the targets, in raw units (the model-step kernel, all rows).

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

    Notes
    -----
    Inputs are not validated here (``GaussianEnsemble.predict`` does); they are cast to the
    weights' dtype.
    """
    model = kernel_model_args(arrays)
    dtype = model[0].dtype
    obs, act = _arg(obs, dtype), _arg(act, dtype)
    members = (np.arange(arrays.ensemble_size, dtype=np.int64) if members is None
               else _arg(members, np.int64).reshape(-1))
    d_obs, d_out = obs.shape[1], model[9].shape[0]
    mean = np.empty((members.size, obs.shape[0], d_out), dtype)
    var = np.empty_like(mean)
    _model_kernels()._model_predict(obs, act, members, *model,
                                    *_scratch(model[1], obs.shape[0], d_out, dtype), mean, var)
    if d_out > d_obs:
        return mean[..., :d_obs], var[..., :d_obs], mean[..., d_obs], var[..., d_obs]
    return mean, var, None, None


def step_from_arrays(arrays, obs, act, members, noise):
    """One reparameterized model step: ``next = mean + std * noise`` for member ``members[row]``.

    Parameters
    ----------
    arrays : ModelArrays
    obs : float array (B, D_obs)
    act : float array (B, D_act)
    members : int array (B,), values in ``[0, E)``
    noise : float array (B, D_out)
        Standard normal draws, one column per target (D_obs, plus the reward with a reward head);
        zeros give the members' means.

    Returns
    -------
    next_obs : (B, D_obs)
    reward : (B,) from the learned reward head, or None without one

    Notes
    -----
    One member's forward pass per row (``fastmbrl.models._kernels._model_step``). Inputs are not
    validated here (``ModelEnv.step`` and ``GaussianEnsemble.sample`` do).
    """
    model = kernel_model_args(arrays)
    dtype = model[0].dtype
    obs, act, noise = _arg(obs, dtype), _arg(act, dtype), _arg(noise, dtype)
    members = _arg(members, np.int64)
    n, d_obs, d_out = obs.shape[0], obs.shape[1], model[9].shape[0]
    e = int(arrays.ensemble_size)
    x_buf, y_buf, h0, h1, ebuf = _scratch(model[1], n, d_out, dtype)
    next_obs = np.empty((n, d_obs), dtype)
    reward = np.empty(n, dtype)
    _model_kernels()._model_step(
        obs, act, members, noise, *model, np.empty(n, np.int64), np.empty(e + 1, np.int64),
        np.empty(e, np.int64), x_buf, y_buf, np.empty((n, d_out), dtype), h0, h1, ebuf, next_obs,
        reward)
    return next_obs, (reward if d_out > d_obs else None)
