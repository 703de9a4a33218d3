"""fastmbrl_policy: a trained fastmbrl policy in pure NumPy (written out by ``fastmbrl export``).

This file imports only NumPy: copy it next to its ``policy.npz`` and use it where fastmbrl, Numba
or a compiler are not available::

    import fastmbrl_policy
    policy = fastmbrl_policy.load("policy.npz")
    action = policy.act(obs)          # obs (D_obs,) -> action (D_act,), float32

It computes the SAC actor's deterministic action, what ``fastmbrl.agents.SAC.act(obs,
deterministic=True)`` returns, in float32::

    h = obs
    h = act(h @ W_l + b_l)                    for each hidden layer (ReLU or tanh)
    out = h @ W_L + b_L                       (2 D_act,): mean, then the raw log-std (unused)
    action = clip(scale * tanh(out[:D_act]) + bias, low, high)
"""
import os

import numpy as np

__all__ = ["Policy", "load", "KIND", "FORMAT_VERSION"]

KIND = "fastmbrl.deploy.policy"
FORMAT_VERSION = 1
_ACTIVATIONS = ("relu", "tanh")


class Policy:
    """A deterministic squashed-Gaussian policy (the SAC actor's mean action).

    Parameters
    ----------
    weights : list of (W, b)
        W (fan_in, fan_out), b (fan_out,) per layer; the last layer has 2 D_act outputs.
    activation : {"relu", "tanh"}
        Hidden activation.
    scale, bias, low, high : arrays (D_act,)
        ``action = clip(scale * tanh(mean) + bias, low, high)``.

    Attributes
    ----------
    obs_dim, act_dim : int

    Raises
    ------
    ValueError
        Naming the argument, for an unknown activation or inconsistent shapes.
    """

    def __init__(self, weights, activation, scale, bias, low, high):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {_ACTIVATIONS}, got {activation!r}")
        if not weights:
            raise ValueError("weights: expected at least one (W, b) layer, got none")
        self.weights = [(np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32))
                        for w, b in weights]
        self.activation = activation
        self.scale, self.bias, self.low, self.high = (
            np.ascontiguousarray(v, np.float32).reshape(-1) for v in (scale, bias, low, high))
        self.obs_dim = int(self.weights[0][0].shape[0])
        self.act_dim = int(self.scale.shape[0])
        width = self.obs_dim
        for i, (w, b) in enumerate(self.weights):
            if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                raise ValueError(f"weights[{i}]: expected W ({width}, n) and b (n,), got "
                                 f"{w.shape} and {b.shape}")
            width = int(w.shape[1])
        if width != 2 * self.act_dim:
            raise ValueError(f"weights: the last layer has {width} outputs, expected 2 * "
                             f"{self.act_dim} (mean and log-std of each action dim)")
        for name in ("bias", "low", "high"):
            if getattr(self, name).shape != (self.act_dim,):
                raise ValueError(f"{name}: expected shape ({self.act_dim},), got "
                                 f"{getattr(self, name).shape}")

    def act(self, obs):
        """The deterministic action for one observation or a batch.

        Parameters
        ----------
        obs : float array (D_obs,) or (B, D_obs)
            Finite values.

        Returns
        -------
        float32 array (D_act,) or (B, D_act)
            Inside ``[low, high]``.

        Raises
        ------
        ValueError
            Naming ``obs``, for another shape or a non-finite value.
        """
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        if single:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"obs: expected shape ({self.obs_dim},) or (B, {self.obs_dim}), got "
                             f"{np.shape(obs)}")
        if not np.all(np.isfinite(x)):
            raise ValueError("obs: contains non-finite values (NaN or inf)")
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(self.weights):
            h = h @ w + b
            if i < last:
                h = np.maximum(h, np.float32(0)) if self.activation == "relu" else np.tanh(h)
        a = self.scale * np.tanh(h[:, :self.act_dim]) + self.bias
        a = np.minimum(np.maximum(a, self.low), self.high).astype(np.float32, copy=False)
        return a[0] if single else a

    __call__ = act


def load(path):
    """Read a ``policy.npz`` written by ``fastmbrl export --format numpy``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Policy

    Raises
    ------
    ValueError
        Naming ``path``, when it is unreadable, not a fastmbrl policy file, or of another format
        version.
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - any reader error: one message naming the file
        raise ValueError(f"path: {path!r} is not a readable policy file "
                         f"({type(exc).__name__}: {exc})") from None
    if str(arrays.get("kind", "")) != KIND:
        raise ValueError(f"path: {path!r} is not a fastmbrl policy file (expected kind {KIND!r})")
    version = int(arrays.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise ValueError(f"path: {path!r} has policy format version {version}, expected "
                         f"{FORMAT_VERSION}")
    try:
        n = int(arrays["n_layers"])
        weights = [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(n)]
        return Policy(weights, str(arrays["activation"]), arrays["scale"], arrays["bias"],
                      arrays["low"], arrays["high"])
    except KeyError as exc:
        raise ValueError(f"path: {path!r} is missing the array {exc}") from None
    except ValueError as exc:
        raise ValueError(f"path: {path!r} holds an inconsistent policy ({exc})") from None
