"""fastmbrl_model: a trained fastmbrl dynamics model in pure NumPy (written out by ``fastmbrl
export``).

This file imports only NumPy: copy it next to its ``model.npz`` and plan with the model in any
MPC code::

    import fastmbrl_model
    model = fastmbrl_model.load("model.npz")
    out = model.predict(obs, act)     # obs (D_obs,), act (D_act,)
    out["mean"], out["logvar"]        # (E, D_obs) each: every member's next observation

Every member ``e`` of the ensemble gives a Gaussian over the next observation, computed in
float32 exactly as fastmbrl's model step (``fastmbrl.models.arrays``)::

    x = [obs[plain_idx], sin(obs[angle_idx]), cos(obs[angle_idx]), act]
    x = (x - in_mean) / in_std
    y = MLP_e(x)                              (2 D_out,)
    lv = max_logvar - softplus(max_logvar - y[D_out:])
    lv = min_logvar + softplus(lv - min_logvar)
    mean = out_mean + out_std * y[:D_out] + [obs * delta_mask, 0]
    logvar = lv + logvar_shift                (logvar_shift = 2 log(out_std))

Columns ``0..D_obs-1`` are the next observation (the change is already added back); with a
learned reward head (``has_reward``), column ``D_obs`` is the reward, returned as
``reward_mean`` / ``reward_logvar``. ``elites`` lists the members the training run planned with.
"""
import os

import numpy as np

__all__ = ["Model", "load", "KIND", "FORMAT_VERSION"]

KIND = "fastmbrl.deploy.model"
FORMAT_VERSION = 1
_ACTIVATIONS = ("identity", "relu", "tanh", "silu")
_VECTORS = ("in_mean", "in_std", "out_mean", "out_std", "max_logvar", "min_logvar",
            "logvar_shift")


def _softplus(z):
    return np.maximum(z, np.float32(0)) + np.log1p(np.exp(-np.abs(z)))


def _activate(z, activation):
    if activation == "relu":
        return np.maximum(z, np.float32(0))
    if activation == "tanh":
        return np.tanh(z)
    if activation == "silu":
        with np.errstate(over="ignore"):
            return z / (np.float32(1) + np.exp(-z))
    return z


class Model:
    """An ensemble of Gaussian dynamics models (all members), as float32 arrays.

    Parameters
    ----------
    weights : list of (W, b)
        W (E, fan_in, fan_out), b (E, fan_out) per layer; the last layer has 2 D_out outputs.
    activation : {"identity", "relu", "tanh", "silu"}
    obs_dim, act_dim : int
    plain_idx, angle_idx : int arrays
        Observation columns fed as they are / as (sin, cos).
    delta_mask : array (D_obs,)
        1 where the observation is added back (change targets), else 0.
    in_mean, in_std : arrays (D_in,)
    out_mean, out_std, max_logvar, min_logvar, logvar_shift : arrays (D_out,)
    has_reward : bool
    elites : int array
        The members the training run planned with.

    Attributes
    ----------
    ensemble_size : int
        E.

    Raises
    ------
    ValueError
        Naming the argument, for an unknown activation or inconsistent shapes.
    """

    def __init__(self, weights, activation, obs_dim, act_dim, plain_idx, angle_idx, delta_mask,
                 in_mean, in_std, out_mean, out_std, max_logvar, min_logvar, logvar_shift,
                 has_reward, elites):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {_ACTIVATIONS}, got {activation!r}")
        if not weights:
            raise ValueError("weights: expected at least one (W, b) layer, got none")
        self.weights = [(np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32))
                        for w, b in weights]
        self.activation = activation
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.plain_idx = np.asarray(plain_idx, np.int64).reshape(-1)
        self.angle_idx = np.asarray(angle_idx, np.int64).reshape(-1)
        self.delta_mask = np.asarray(delta_mask, np.float32).reshape(-1)
        for name, value in zip(_VECTORS, (in_mean, in_std, out_mean, out_std, max_logvar,
                                          min_logvar, logvar_shift)):
            setattr(self, name, np.ascontiguousarray(value, np.float32).reshape(-1))
        self.has_reward = bool(has_reward)
        self.elites = np.asarray(elites, np.int64).reshape(-1)
        self.ensemble_size = int(self.weights[0][0].shape[0])
        d_in = self.obs_dim + self.angle_idx.size + self.act_dim
        d_out = self.obs_dim + int(self.has_reward)
        if self.plain_idx.size + self.angle_idx.size != self.obs_dim:
            raise ValueError(f"plain_idx, angle_idx: expected {self.obs_dim} columns in all, got "
                             f"{self.plain_idx.size} + {self.angle_idx.size}")
        if self.delta_mask.shape != (self.obs_dim,):
            raise ValueError(f"delta_mask: expected shape ({self.obs_dim},), got "
                             f"{self.delta_mask.shape}")
        for name in _VECTORS:
            want = d_in if name.startswith("in_") else d_out
            if getattr(self, name).shape != (want,):
                raise ValueError(f"{name}: expected shape ({want},), got "
                                 f"{getattr(self, name).shape}")
        width = d_in
        for i, (w, b) in enumerate(self.weights):
            if w.ndim != 3 or w.shape[:2] != (self.ensemble_size, width) or \
                    b.shape != (self.ensemble_size, w.shape[2]):
                raise ValueError(f"weights[{i}]: expected W ({self.ensemble_size}, {width}, n) and "
                                 f"b ({self.ensemble_size}, n), got {w.shape} and {b.shape}")
            width = int(w.shape[2])
        if width != 2 * d_out:
            raise ValueError(f"weights: the last layer has {width} outputs, expected 2 * {d_out}")

    def predict(self, obs, act):
        """Every member's Gaussian over the next observation (and the reward, with a head).

        Parameters
        ----------
        obs : float array (D_obs,) or (B, D_obs)
        act : float array (D_act,) or (B, D_act)
            Finite values; a single row or B rows (both the same).

        Returns
        -------
        dict of float32 arrays
            ``mean``, ``logvar``: (E, D_obs) for a single row, (E, B, D_obs) for a batch; with a
            reward head also ``reward_mean``, ``reward_logvar``: (E,) or (E, B).

        Raises
        ------
        ValueError
            Naming ``obs`` or ``act``, for another shape or a non-finite value.
        """
        o = np.asarray(obs, dtype=np.float32)
        a = np.asarray(act, dtype=np.float32)
        single = o.ndim == 1
        if single:
            o, a = o.reshape(1, -1), a.reshape(1, -1)
        if o.ndim != 2 or o.shape[1] != self.obs_dim:
            raise ValueError(f"obs: expected shape ({self.obs_dim},) or (B, {self.obs_dim}), got "
                             f"{np.shape(obs)}")
        if a.ndim != 2 or a.shape != (o.shape[0], self.act_dim):
            want = f"({self.act_dim},)" if single else f"({o.shape[0]}, {self.act_dim})"
            raise ValueError(f"act: expected shape {want}, got {np.shape(act)}")
        for name, v in (("obs", o), ("act", a)):
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
        ang = o[:, self.angle_idx]
        x = np.concatenate([o[:, self.plain_idx], np.sin(ang), np.cos(ang), a], axis=1)
        h = (x - self.in_mean) / self.in_std
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(self.weights):
            h = np.matmul(h, w) + b[:, None, :]           # (B, n) @ (E, n, m) -> (E, B, m)
            if i < last:
                h = _activate(h, self.activation)
        d_out, d_obs = self.out_mean.shape[0], self.obs_dim
        lv = self.max_logvar - _softplus(self.max_logvar - h[..., d_out:])
        lv = self.min_logvar + _softplus(lv - self.min_logvar)
        mean = self.out_mean + self.out_std * h[..., :d_out]
        logvar = (lv + self.logvar_shift).astype(np.float32, copy=False)
        out = {"mean": (mean[..., :d_obs] + o * self.delta_mask).astype(np.float32, copy=False),
               "logvar": logvar[..., :d_obs]}
        if self.has_reward:
            out["reward_mean"] = mean[..., d_obs].astype(np.float32, copy=False)
            out["reward_logvar"] = logvar[..., d_obs]
        if single:
            out = {k: v[:, 0] for k, v in out.items()}
        return out

    __call__ = predict


def load(path):
    """Read a ``model.npz`` written by ``fastmbrl export --format numpy``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Model

    Raises
    ------
    ValueError
        Naming ``path``, when it is unreadable, not a fastmbrl model file, or of another format
        version.
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - any reader error: one message naming the file
        raise ValueError(f"path: {path!r} is not a readable model file "
                         f"({type(exc).__name__}: {exc})") from None
    if str(arrays.get("kind", "")) != KIND:
        raise ValueError(f"path: {path!r} is not a fastmbrl model file (expected kind {KIND!r})")
    version = int(arrays.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise ValueError(f"path: {path!r} has model format version {version}, expected "
                         f"{FORMAT_VERSION}")
    try:
        n = int(arrays["n_layers"])
        weights = [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(n)]
        return Model(weights, str(arrays["activation"]), int(arrays["obs_dim"]),
                     int(arrays["act_dim"]), arrays["plain_idx"], arrays["angle_idx"],
                     arrays["delta_mask"], *(arrays[k] for k in _VECTORS),
                     bool(arrays["has_reward"]), arrays["elites"])
    except KeyError as exc:
        raise ValueError(f"path: {path!r} is missing the array {exc}") from None
    except ValueError as exc:
        raise ValueError(f"path: {path!r} holds an inconsistent model ({exc})") from None
