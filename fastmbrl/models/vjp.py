"""The model step's vector-Jacobian product over plain arrays (what ``ModelEnv.step_vjp`` runs).

Two compiled calls around the reward gradient (``fastmbrl.models._kernels``, NumPy twins in
``fastmbrl.models._reference``):

1. ``step_tape_from_arrays``: the model step of ``step_from_arrays`` (rows grouped by member),
   returning the next observation, the learned reward and a :class:`StepTape`, everything the
   backward pass of this step reads;
2. ``vjp_from_tape``: ``(d_next_obs, d_reward) -> (d_obs, d_act)`` from that tape.

A caller with a reward function runs its gradient on ``next_obs`` between the two. An h-step
backward pass (backpropagation through time) keeps one :class:`StepTape` per step: per step
``B (D_obs + D_act + D_out + sum(hidden widths) + 2 D_out)`` floats plus ``B + 2 E + 1`` ints,
linear in h; the weights are shared by all steps.
"""
from typing import NamedTuple

import numpy as np

from fastmbrl.models.arrays import _arg, _model_kernels, kernel_model_args


class StepTape(NamedTuple):
    """What the VJP of one model step reads (written by ``step_tape_from_arrays``).

    ``obs``, ``act`` and ``noise`` are the arrays the step was given when they already had the
    weights' dtype and were C-contiguous (no copy): a caller that keeps tapes for a later backward
    pass must not overwrite those arrays in between.

    Attributes
    ----------
    obs : float array (B, D_obs)
    act : float array (B, D_act)
    noise : float array (B, D_out)
    order : int64 array (B,)              rows sorted by member (position -> row)
    block_starts : int64 array (E+1,)     member e's positions are ``block_starts[e]..[e+1]``
    block_members : int64 array (E,)
    z : float array (B * sum(hidden),)    hidden pre-activations, layer after layer, by position
    y : float array (B, 2 D_out)          network output (normalised mean, raw log-variance)
    """

    obs: np.ndarray
    act: np.ndarray
    noise: np.ndarray
    order: np.ndarray
    block_starts: np.ndarray
    block_members: np.ndarray
    z: np.ndarray
    y: np.ndarray


def _widths(layer_dims):
    dims = np.asarray(layer_dims)
    hidden = dims[1:-1]
    return int(hidden.sum()), (int(hidden.max()) if hidden.size else 1)


def step_tape_from_arrays(arrays, obs, act, members, noise):
    """One reparameterized model step that also records its backward tape.

    Parameters
    ----------
    arrays, obs, act, members, noise :
        As :func:`fastmbrl.models.arrays.step_from_arrays`: ModelArrays, (B, D_obs), (B, D_act),
        int (B,) in ``[0, E)``, (B, D_out).

    Returns
    -------
    next_obs : (B, D_obs)
    reward : (B,) from the learned reward head, or None without one
    tape : StepTape

    Notes
    -----
    Inputs are not validated here (``ModelEnv.step_vjp`` does); they are cast to the weights'
    dtype. The values equal ``step_from_arrays``' (same grouping, same arithmetic).
    """
    model = kernel_model_args(arrays)
    k = _model_kernels()
    dtype = model[0].dtype
    obs, act, noise = _arg(obs, dtype), _arg(act, dtype), _arg(noise, dtype)
    members = _arg(members, np.int64)
    n, d_obs, d_out = obs.shape[0], obs.shape[1], model[9].shape[0]
    e = int(arrays.ensemble_size)
    hidden_sum, hidden_max = _widths(model[1])
    order = np.empty(n, np.int64)
    starts = np.empty(e + 1, np.int64)
    who = np.empty(e, np.int64)
    k._group_rows(members, e, order, starts, who)
    z = np.empty(n * hidden_sum, dtype)
    y = np.empty((n, int(model[1][-1])), dtype)
    next_obs = np.empty((n, d_obs), dtype)
    reward = np.empty(n, dtype)
    k._model_step_tape(obs, act, order, starts, who, noise, *model,
                       np.empty((n, int(model[1][0])), dtype), z, y, np.empty((n, d_out), dtype),
                       np.empty(n * hidden_max, dtype), np.empty(2 * n * max(hidden_max, d_out),
                                                                 dtype), next_obs, reward)
    tape = StepTape(obs, act, noise, order, starts, who, z, y)
    return next_obs, (reward if d_out > d_obs else None), tape


def vjp_from_tape(arrays, tape, d_next_obs, d_reward=None):
    """Cotangents of one step's inputs from the cotangents of its outputs.

    Parameters
    ----------
    arrays : ModelArrays
        The model that wrote ``tape``.
    tape : StepTape
    d_next_obs : float array (B, D_obs)
        Cotangent of the sampled next observation.
    d_reward : float array (B,), optional
        Cotangent of the learned reward (used only when the model has a reward head); None: 0.

    Returns
    -------
    d_obs : (B, D_obs)
    d_act : (B, D_act)
    """
    model = kernel_model_args(arrays)
    k = _model_kernels()
    dtype = model[0].dtype
    n, d_obs = tape.obs.shape
    d_act = tape.act.shape[1]
    _, hidden_max = _widths(model[1])
    d_next_obs = _arg(d_next_obs, dtype)
    d_reward = np.zeros(n, dtype) if d_reward is None else _arg(d_reward, dtype)
    d_obs_out = np.empty((n, d_obs), dtype)
    d_act_out = np.empty((n, d_act), dtype)
    width = max(hidden_max, int(model[1][0]))
    k._model_step_vjp(tape.obs, tape.act, tape.order, tape.block_starts, tape.block_members,
                      tape.noise, *model, tape.z, tape.y, d_next_obs, d_reward,
                      np.empty_like(tape.y), np.empty(n * width, dtype), np.empty(n * width, dtype),
                      np.empty((n, int(model[1][0])), dtype), d_obs_out, d_act_out)
    return d_obs_out, d_act_out


def warmup(dtypes=(np.float32, np.float64)):
    """Compile (or load from the cache) the taped step and VJP kernels for each dtype, on a tiny
    model of every hidden activation."""
    from fastmbrl.models.arrays import ModelArrays

    for dtype in dtypes:
        for activation in range(4):
            dims = np.array([3, 4, 4, 4], np.int64)
            n_params = 2 * (3 * 4 + 4 + 4 * 4 + 4 + 4 * 4 + 4)
            arrays = ModelArrays(
                flat=np.zeros(n_params, dtype), layer_dims=dims, ensemble_size=2,
                activation=activation, members=np.arange(2, dtype=np.int64),
                angle_mask=np.array([True, False]), delta_mask=np.array([True, False]),
                in_mean=np.zeros(3, dtype), in_std=np.ones(3, dtype), out_mean=np.zeros(2, dtype),
                out_std=np.ones(2, dtype), max_logvar=np.zeros(2, dtype),
                min_logvar=np.full(2, -5.0, dtype), has_reward=False)
            obs = np.zeros((2, 2), dtype)
            _, _, tape = step_tape_from_arrays(arrays, obs, np.zeros((2, 0), dtype),
                                               np.array([0, 1]), np.zeros((2, 2), dtype))
            vjp_from_tape(arrays, tape, obs)
