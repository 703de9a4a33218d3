"""The heteroskedastic Gaussian MLE loss (course notes, section 4.1) and PETS' soft log-variance bounds."""
import numpy as np

from fastmbrl._config import SUPPORTED_DTYPES
from fastmbrl.nn import _kernels


def _check_same(names_arrays):
    (name0, a0) = names_arrays[0]
    for name, a in names_arrays:
        if not isinstance(a, np.ndarray) or a.dtype.type not in SUPPORTED_DTYPES:
            got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"{name}: expected a float32 or float64 array, got {got}")
        if a.dtype != a0.dtype:
            raise TypeError(f"{name}: expected dtype {a0.dtype} like {name0}, got {a.dtype}")
        if a.shape != a0.shape:
            raise ValueError(f"{name}: expected shape {a0.shape} like {name0}, got {a.shape}")
        if a.ndim != 3:
            raise ValueError(f"{name}: expected a 3-D array (E, B, D), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
    return [np.ascontiguousarray(a) for _, a in names_arrays]


def gaussian_nll(mean, logvar, target):
    """Gaussian negative log-likelihood with diagonal covariance, and its exact gradients.

    Parameters
    ----------
    mean, logvar, target : float32 or float64 arrays of shape (E, B, D)

    Returns
    -------
    loss : float
        ``1/(E B) sum_{e,b} sum_d [(target - mean)^2 exp(-logvar) + logvar]``
    dmean, dlogvar : arrays (E, B, D), the gradient of ``loss``

    Notes
    -----
    The MLE loss of a heteroskedastic Gaussian noise model (course notes eq. in 4.1) with
    Sigma = diag(exp(logvar)): the quadratic form plus log det Sigma, averaged over rows and members.
    The constant D log(2 pi) and the factor 1/2 of the true NLL are dropped, as in the notes.
    """
    mean, logvar, target = _check_same([("mean", mean), ("logvar", logvar), ("target", target)])
    dmean = np.empty_like(mean)
    dlogvar = np.empty_like(mean)
    loss = _kernels._gaussian_nll_grad(mean, logvar, target, dmean, dlogvar)
    return loss, dmean, dlogvar


def _check_bounds(raw, max_logvar, min_logvar):
    (raw,) = _check_same([("raw", raw)])
    out = []
    for name, b in (("max_logvar", max_logvar), ("min_logvar", min_logvar)):
        b = np.asarray(b)
        if b.shape != (raw.shape[2],):
            raise ValueError(f"{name}: expected shape ({raw.shape[2]},), got {b.shape}")
        if b.dtype != raw.dtype:
            raise TypeError(f"{name}: expected dtype {raw.dtype} like raw, got {b.dtype}")
        out.append(np.ascontiguousarray(b))
    return raw, out[0], out[1]


def soft_bound_logvar(raw, max_logvar, min_logvar):
    """Softly bound a raw log-variance between learnable ``min_logvar`` and ``max_logvar``.

    Parameters
    ----------
    raw : float array (E, B, D), the network's log-variance output
    max_logvar, min_logvar : float arrays (D,)

    Returns
    -------
    logvar : array (E, B, D)
    cache : tuple to pass to ``soft_bound_logvar_backward``

    Notes
    -----
    ``lv = max - softplus(max - raw)``, then ``lv = min + softplus(lv - min)`` (Chua et al. 2018,
    appendix A.1). Smooth, so gradients keep flowing near the bounds; the bounds themselves are
    trained, with the small penalty ``0.01 (sum max - sum min)`` added by the model.
    """
    raw, max_logvar, min_logvar = _check_bounds(raw, max_logvar, min_logvar)
    lv = np.empty_like(raw)
    _kernels._soft_bound_forward(raw, max_logvar, min_logvar, lv)
    return lv, (raw, max_logvar, min_logvar)


def soft_bound_logvar_backward(d_logvar, cache):
    """Gradients of ``soft_bound_logvar``.

    Parameters
    ----------
    d_logvar : array (E, B, D), dLoss/dlogvar
    cache : the second output of ``soft_bound_logvar``

    Returns
    -------
    d_raw : (E, B, D);  d_max_logvar, d_min_logvar : (D,), summed over members and rows
    """
    raw, max_logvar, min_logvar = cache
    (d_logvar,) = _check_same([("d_logvar", d_logvar)])
    if d_logvar.shape != raw.shape or d_logvar.dtype != raw.dtype:
        raise ValueError(f"d_logvar: expected {raw.dtype} array of shape {raw.shape}, "
                         f"got {d_logvar.dtype} {d_logvar.shape}")
    d_raw = np.empty_like(raw)
    d_max = np.empty_like(max_logvar)
    d_min = np.empty_like(min_logvar)
    _kernels._soft_bound_backward(raw, max_logvar, min_logvar, d_logvar, d_raw, d_max, d_min)
    return d_raw, d_max, d_min
