"""The pieces of ``GaussianEnsemble.fit`` around the trainer: the checks of the data, the
normalization computed from it (checked in the model dtype before anything of the model changes),
the warm start's carry-over of the previous normalization into the weights, and the weight decay
of the weight matrices (``pets_weight_decay``: PETS' depth ramp).

Each function takes the model and reads its public attributes (dims, masks, normalizers, network,
log-variance bounds); none keeps state.
"""
import numpy as np

from fastmbrl._validate import as_float_array
from fastmbrl.models.normalizer import Normalizer
from fastmbrl.nn.optim import parse_weight_decay

__all__ = ["pets_weight_decay", "resolve_weight_decay", "check_fit_data", "normalized_fit_data",
           "carry_over_normalization", "INIT_MAX_LOGVAR", "INIT_MIN_LOGVAR"]

# PETS (Chua et al. 2018) initial soft bounds, in normalized target units.
INIT_MAX_LOGVAR = 0.5
INIT_MIN_LOGVAR = -10.0


def pets_weight_decay(n_layers):
    """PETS-like L2 decay per weight matrix, growing with depth.

    Parameters
    ----------
    n_layers : int
        Number of weight matrices (hidden layers + 1).

    Returns
    -------
    list of float
        ``n_layers`` values spaced evenly from 2.5e-5 (first layer) to 1e-4 (output layer).

    Notes
    -----
    PETS' half-cheetah model (4 x 200 hidden) uses 2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4; an even
    ramp between the same end points generalizes it to any depth.
    """
    if n_layers == 1:
        return [1e-4]
    return [float(v) for v in np.linspace(2.5e-5, 1e-4, n_layers)]


def resolve_weight_decay(weight_decay, n_layers):
    """The per-weight-matrix decays a ``weight_decay`` argument means: ``"pets"`` gives
    :func:`pets_weight_decay`, a float or ``n_layers`` floats are checked and expanded (list of
    ``n_layers`` floats)."""
    if isinstance(weight_decay, str):
        if weight_decay != "pets":
            raise ValueError(f"weight_decay: expected 'pets', a float or {n_layers} floats, "
                             f"got {weight_decay!r}")
        return pets_weight_decay(n_layers)
    return parse_weight_decay(weight_decay, n_layers, "weight matrix")


def check_fit_data(model, obs, act, next_obs, reward):
    """``(obs, act, next_obs, reward)`` of a fit as float64 arrays of ``model``'s widths (reward
    None without a reward head); ValueError naming the argument otherwise, or with fewer than 2
    rows."""
    obs = as_float_array("obs", obs, np.float64, ndim=2, shape=(None, model.obs_dim))
    n = obs.shape[0]
    act = as_float_array("act", act, np.float64, shape=(n, model.act_dim))
    next_obs = as_float_array("next_obs", next_obs, np.float64, shape=(n, model.obs_dim))
    if model.learn_reward:
        if reward is None:
            raise ValueError("reward: required when learn_reward=True, got None")
        reward = as_float_array("reward", reward, np.float64, shape=(n,))
    if n < 2:
        raise ValueError(f"obs: expected at least 2 transitions to fit, got {n}")
    return obs, act, next_obs, reward


def normalized_fit_data(model, obs, act, next_obs, reward):
    """The network's inputs and targets for checked fit data, normalized by statistics of these
    rows (notes, 4.2 trick 4).

    Returns
    -------
    in_norm, out_norm : Normalizer
        Fresh normalizers fitted to the inputs and the targets (the model's are not touched).
    X, Y : arrays (N, D_in), (N, D_out) in the model dtype

    Raises
    ------
    ValueError
        When the transformed or normalized data is not finite in the model dtype, or the
        targets' spread would make the predicted variance overflow it.
    """
    inputs = model.model_inputs(obs, act)
    targets = model.model_targets(obs, next_obs, reward)
    for name, arr in (("obs/act (as network inputs)", inputs), ("targets", targets)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: the transformed data overflowed to non-finite values")

    # ---- normalization from these rows (notes, 4.2 trick 4), computed into temporaries and
    # checked in the model dtype before anything of the model changes
    in_norm = Normalizer(model.in_dim, model.dtype)
    out_norm = Normalizer(model.out_dim, model.dtype)
    try:
        in_norm.fit(inputs)
    except ValueError as exc:
        raise ValueError(f"obs/act (as network inputs): {exc}") from None
    try:
        out_norm.fit(targets)
    except ValueError as exc:
        raise ValueError(f"targets (next_obs{', reward' if model.learn_reward else ''}): "
                         f"{exc}") from None
    with np.errstate(over="ignore", invalid="ignore"):
        X = in_norm.normalize(inputs)
        Y = out_norm.normalize(targets)
    for name, arr in (("obs/act (as network inputs)", X), ("targets", Y)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: not finite after normalization in "
                             f"{np.dtype(model.dtype).name} (values too large for the model "
                             f"dtype); the model was left unchanged")
    # The predicted variance is out_std**2 * exp(logvar), computed in the model dtype: its
    # largest value (at the log-variance's upper bound) must be representable.
    top = float(np.max(out_norm.std.astype(np.float64))) ** 2 * np.exp(
        max(float(np.max(model.max_logvar)), INIT_MAX_LOGVAR))
    if not top <= np.finfo(model.dtype).max:
        raise ValueError(f"targets: their spread (std up to "
                         f"{float(np.max(out_norm.std)):.3g}) makes the predicted variance "
                         f"overflow {np.dtype(model.dtype).name} (up to {top:.3g}, largest "
                         f"{np.finfo(model.dtype).max:.3g}); rescale the data or use "
                         f"dtype=float64; the model was left unchanged")
    return in_norm, out_norm, X, Y


def carry_over_normalization(model, in_mean, in_std, out_mean, out_std):
    """Rewrite ``model``'s first and last layers so the network computes the same function in raw
    units under its new normalization statistics as it did under the old ones (``in_mean`` ...
    ``out_std``, float64), and shift the log-variance bounds to match.

    Notes
    -----
    A warm start must start from the previous model, not from a model whose inputs and outputs
    were silently rescaled: with x_old = (x_new s_new + m_new - m_old) / s_old at the input,
    W0 <- diag(s_new / s_old) W0 and b0 <- b0 + ((m_new - m_old) / s_old) W0. At the output,
    mean_new = (s_old mean_old + m_old - m_new) / s_new, so the mean columns are scaled by
    s_old / s_new and shifted; the log-variance is shifted by 2 log(s_old / s_new), as are both
    soft bounds, which leaves the bounded log-variance exactly shifted. Without this, a refit on
    a grown buffer starts from a much worse loss and early stopping keeps poor weights.
    """
    new_in_mean = model.input_normalizer.mean.astype(np.float64)
    new_in_std = model.input_normalizer.std.astype(np.float64)
    new_out_mean = model.output_normalizer.mean.astype(np.float64)
    new_out_std = model.output_normalizer.std.astype(np.float64)
    W0, b0 = model.net.params[0], model.net.params[1]
    shift_in = (new_in_mean - in_mean) / in_std                    # (D_in,)
    b0 += np.einsum("i,eio->eo", shift_in, W0.astype(np.float64)).astype(model.dtype)
    W0 *= (new_in_std / in_std).astype(model.dtype)[None, :, None]
    WL, bL = model.net.params[-2], model.net.params[-1]
    D = model.out_dim
    ratio = out_std / new_out_std
    WL[:, :, :D] *= ratio.astype(model.dtype)
    bL[:, :D] = (bL[:, :D] * ratio + (out_mean - new_out_mean) / new_out_std).astype(model.dtype)
    lv_shift = (2.0 * np.log(ratio)).astype(model.dtype)
    bL[:, D:] += lv_shift
    model.max_logvar += lv_shift
    model.min_logvar += lv_shift
