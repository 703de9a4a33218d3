"""The exported networks as plain float32 arrays: what every export format writes out.

Two contracts, shared by the ONNX graphs, the C sources and the NumPy runtime modules:

Policy (the SAC actor's deterministic action, ``SAC.act(obs, deterministic=True)``)::

    h = obs                                   (D_obs,)
    h = act(h @ W_l + b_l)                    hidden layers, act = ReLU or tanh
    out = h @ W_L + b_L                       (2 D_act,): mean, then raw log-std (unused)
    action = clip(scale * tanh(out[:D_act]) + bias, low, high)

Dynamics model (every member of a ``GaussianEnsemble``, ``fastmbrl.models.arrays``)::

    x = [obs[plain], sin(obs[angle]), cos(obs[angle]), act]      (D_in,)
    x = (x - in_mean) / in_std
    y_e = MLP_e(x)                            (2 D_out,) for member e, hidden act: identity,
                                              ReLU, tanh or SiLU
    lv = max_logvar - softplus(max_logvar - y_e[D_out:])
    lv = min_logvar + softplus(lv - min_logvar)
    mean_e = out_mean + out_std * y_e[:D_out] + [obs * delta_mask, 0]
    logvar_e = lv + 2 log(out_std)            (= log of the model's variance)

Columns ``0..D_obs-1`` of ``mean_e`` / ``logvar_e`` are the next observation; column ``D_obs``,
when the model has a learned reward head, is the reward.
"""
from typing import NamedTuple

import numpy as np

from fastmbrl._config import ACTIVATIONS
from fastmbrl.nn._flat import unflatten

_ACTIVATION_NAMES = {code: name for name, code in ACTIVATIONS.items()}


def _f32(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64).astype(np.float32))


class PolicyParams(NamedTuple):
    """The deterministic SAC policy as float32 arrays (see the module docstring).

    Attributes
    ----------
    weights : list of (W, b)
        W float32 (fan_in, fan_out), b float32 (fan_out,), one pair per layer; the last layer has
        2 D_act outputs (mean, raw log-std).
    activation : {"relu", "tanh"}
        Hidden activation.
    scale, bias : float32 arrays (D_act,)
        ``(high - low) / 2`` and ``(high + low) / 2``.
    low, high : float32 arrays (D_act,)
        The action bounds the action is clipped to.
    obs_dim, act_dim : int
    """

    weights: list
    activation: str
    scale: np.ndarray
    bias: np.ndarray
    low: np.ndarray
    high: np.ndarray
    obs_dim: int
    act_dim: int

    @property
    def widths(self):
        """Layer widths (D_obs, hidden..., 2 D_act)."""
        return [self.obs_dim] + [int(w.shape[1]) for w, _ in self.weights]


class ModelParams(NamedTuple):
    """Every member of a dynamics model as float32 arrays (see the module docstring).

    Attributes
    ----------
    weights : list of (W, b)
        W float32 (E, fan_in, fan_out), b float32 (E, fan_out), one pair per layer; the last
        layer has 2 D_out outputs (normalised mean, raw log-variance).
    activation : {"identity", "relu", "tanh", "silu"}
    obs_dim, act_dim, ensemble_size : int
    plain_idx, angle_idx : int64 arrays
        Observation columns fed as they are, and those fed as (sin, cos).
    delta_mask : float32 array (D_obs,)
        1 where the next observation is predicted as a change (``obs`` is added back), else 0.
    in_mean, in_std : float32 arrays (D_in,)
    out_mean, out_std, max_logvar, min_logvar : float32 arrays (D_out,)
    logvar_shift : float32 array (D_out,)
        ``2 log(out_std)``, added to the bounded log-variance (normalised units) to give the
        log-variance in raw units.
    has_reward : bool
        True when column D_obs is a learned reward.
    elites : int64 array
        The members the run plans with (all members are exported).
    """

    weights: list
    activation: str
    obs_dim: int
    act_dim: int
    ensemble_size: int
    plain_idx: np.ndarray
    angle_idx: np.ndarray
    delta_mask: np.ndarray
    in_mean: np.ndarray
    in_std: np.ndarray
    out_mean: np.ndarray
    out_std: np.ndarray
    max_logvar: np.ndarray
    min_logvar: np.ndarray
    logvar_shift: np.ndarray
    has_reward: bool
    elites: np.ndarray

    @property
    def in_dim(self):
        """D_in, the network's input width."""
        return int(self.in_mean.shape[0])

    @property
    def out_dim(self):
        """D_out = D_obs (+ 1 with a reward head)."""
        return int(self.out_mean.shape[0])

    @property
    def widths(self):
        """Layer widths (D_in, hidden..., 2 D_out)."""
        return [self.in_dim] + [int(w.shape[2]) for w, _ in self.weights]


def policy_params(agent):
    """The deterministic policy of a SAC agent as :class:`PolicyParams`.

    Parameters
    ----------
    agent : fastmbrl.agents.SAC

    Returns
    -------
    PolicyParams

    Raises
    ------
    TypeError
        When ``agent`` is not a SAC agent (it has no actor).
    """
    for attr in ("actor", "dims_actor", "activation", "scale", "bias", "action_low", "action_high"):
        if not hasattr(agent, attr):
            raise TypeError(f"agent: expected a fastmbrl.agents.SAC, got {type(agent).__name__} "
                            f"(no {attr!r})")
    params = unflatten(agent.actor, agent.dims_actor, 1)
    weights = [(_f32(params[i][0]), _f32(params[i + 1][0])) for i in range(0, len(params), 2)]
    return PolicyParams(weights=weights, activation=str(agent.activation),
                        scale=_f32(agent.scale), bias=_f32(agent.bias), low=_f32(agent.action_low),
                        high=_f32(agent.action_high), obs_dim=int(agent.obs_dim),
                        act_dim=int(agent.act_dim))


def model_params(model):
    """Every member of a dynamics model as :class:`ModelParams`.

    Parameters
    ----------
    model : fastmbrl.models.GaussianEnsemble or fastmbrl.models.ModelArrays

    Returns
    -------
    ModelParams

    Raises
    ------
    TypeError
        When ``model`` is neither.
    """
    from fastmbrl.models.arrays import ModelArrays

    if not isinstance(model, ModelArrays):
        if not callable(getattr(model, "arrays", None)):
            raise TypeError(f"model: expected a GaussianEnsemble or a ModelArrays, got "
                            f"{type(model).__name__}")
        model = model.arrays()
    e = int(model.ensemble_size)
    dims = np.asarray(model.layer_dims, np.int64)
    params = unflatten(np.asarray(model.flat), dims, e)
    weights = [(_f32(params[i]), _f32(params[i + 1])) for i in range(0, len(params), 2)]
    angle = np.asarray(model.angle_mask, bool)
    out_std = np.asarray(model.out_std, np.float64)
    d_out = int(out_std.shape[0])
    return ModelParams(
        weights=weights, activation=_ACTIVATION_NAMES[int(model.activation)],
        obs_dim=int(angle.shape[0]), act_dim=int(dims[0]) - int(angle.shape[0]) - int(angle.sum()),
        ensemble_size=e, plain_idx=np.flatnonzero(~angle).astype(np.int64),
        angle_idx=np.flatnonzero(angle).astype(np.int64),
        delta_mask=np.asarray(model.delta_mask, bool).astype(np.float32),
        in_mean=_f32(model.in_mean), in_std=_f32(model.in_std), out_mean=_f32(model.out_mean),
        out_std=_f32(out_std), max_logvar=_f32(model.max_logvar),
        min_logvar=_f32(model.min_logvar),
        logvar_shift=_f32(2.0 * np.log(out_std.astype(np.float32).astype(np.float64))),
        has_reward=bool(model.has_reward) and d_out > angle.shape[0],
        elites=np.asarray(model.members, np.int64).copy())


def policy_arrays(params):
    """:class:`PolicyParams` as the named arrays of ``policy.npz`` (the NumPy runtime's input).

    Parameters
    ----------
    params : PolicyParams

    Returns
    -------
    dict of str -> numpy array
        ``kind``, ``format_version``, ``activation``, ``n_layers``, ``W0``, ``b0``, ...,
        ``scale``, ``bias``, ``low``, ``high``.
    """
    from fastmbrl.deploy.numpy_policy import FORMAT_VERSION, KIND

    out = {"kind": np.array(KIND), "format_version": np.array(FORMAT_VERSION, np.int64),
           "activation": np.array(params.activation),
           "n_layers": np.array(len(params.weights), np.int64)}
    for i, (w, b) in enumerate(params.weights):
        out[f"W{i}"], out[f"b{i}"] = w, b
    out.update(scale=params.scale, bias=params.bias, low=params.low, high=params.high)
    return out


def model_arrays(params):
    """:class:`ModelParams` as the named arrays of ``model.npz`` (the NumPy runtime's input).

    Parameters
    ----------
    params : ModelParams

    Returns
    -------
    dict of str -> numpy array
    """
    from fastmbrl.deploy.numpy_model import FORMAT_VERSION, KIND

    out = {"kind": np.array(KIND), "format_version": np.array(FORMAT_VERSION, np.int64),
           "activation": np.array(params.activation),
           "n_layers": np.array(len(params.weights), np.int64),
           "obs_dim": np.array(params.obs_dim, np.int64),
           "act_dim": np.array(params.act_dim, np.int64),
           "has_reward": np.array(params.has_reward)}
    for i, (w, b) in enumerate(params.weights):
        out[f"W{i}"], out[f"b{i}"] = w, b
    for name in ("plain_idx", "angle_idx", "delta_mask", "in_mean", "in_std", "out_mean",
                 "out_std", "max_logvar", "min_logvar", "logvar_shift", "elites"):
        out[name] = getattr(params, name)
    return out
