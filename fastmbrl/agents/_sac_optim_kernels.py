"""SAC's optimizer steps (Numba): Adam (torch.optim.Adam's formula) and the Polyak average of the
target critics, whole or on a range of elements (the fused update splits them between threads).

Element-wise loops over local slices, in the arrays' dtype, so that LLVM vectorizes them. NumPy
twins in ``sac_reference``.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def _adam_coeffs(like, lr, beta1, beta2, eps, step):
    """[beta1, 1 - beta1, beta2, 1 - beta2, step size, 1 / sqrt(bias correction 2), eps] in
    ``like``'s dtype (torch.optim.Adam; step is the 1-based count after the update)."""
    c = np.empty(7, dtype=like.dtype)
    c[0] = beta1
    c[1] = 1.0 - beta1
    c[2] = beta2
    c[3] = 1.0 - beta2
    c[4] = lr / (1.0 - beta1 ** step)
    c[5] = 1.0 / np.sqrt(1.0 - beta2 ** step)
    c[6] = eps
    return c


@njit(cache=True, error_model="numpy")
def _adam_range(param, grad, m, v, c, i0, i1):
    """Adam with the coefficients c of ``_adam_coeffs`` on elements i0:i1, in the arrays' dtype.

    The loop runs over local slices from 0 and ``error_model="numpy"`` drops the division's zero
    check: with either missing LLVM left the loop scalar (3x slower, measured).
    """
    b1, nb1, b2, nb2, step_size, inv_bc2s, ep = c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    p = param[i0:i1]
    gr = grad[i0:i1]
    mm = m[i0:i1]
    vv = v[i0:i1]
    for i in range(p.size):
        g = gr[i]
        mi = b1 * mm[i] + nb1 * g
        vi = b2 * vv[i] + nb2 * g * g
        mm[i] = mi
        vv[i] = vi
        p[i] -= step_size * mi / (np.sqrt(vi) * inv_bc2s + ep)


@njit(cache=True)
def _adam_update(param, grad, m, v, lr, beta1, beta2, eps, step):
    """torch.optim.Adam (no decay, bias-corrected): step is the 1-based count after this update.

    The arithmetic runs in the parameters' dtype (as torch's and the NumPy twin's): a float64 sqrt
    and division per float32 element kept the loop scalar and cost as much as a 256 x 256 matmul.
    """
    _adam_range(param, grad, m, v, _adam_coeffs(param, lr, beta1, beta2, eps, step), 0, param.size)


@njit(cache=True)
def _add_range(dst, src, i0, i1):
    """dst[i0:i1] += src[i0:i1] (local slices, so that LLVM vectorizes)."""
    d = dst[i0:i1]
    s = src[i0:i1]
    for i in range(d.size):
        d[i] += s[i]


@njit(cache=True)
def _polyak_range(target, source, keep, take, i0, i1):
    """target[i0:i1] <- keep target + take source (local slices, so that LLVM vectorizes)."""
    t = target[i0:i1]
    s = source[i0:i1]
    for i in range(t.size):
        t[i] = t[i] * keep + s[i] * take


@njit(cache=True)
def _polyak_update(target, source, tau):
    """target <- (1 - tau) target + tau source, element-wise (SB3's polyak_update), in the arrays'
    dtype."""
    c = np.empty(2, dtype=target.dtype)
    c[0] = 1.0 - tau
    c[1] = tau
    _polyak_range(target, source, c[0], c[1], 0, target.size)


@njit(cache=True)
def _split(n, t, parts):
    """[start, end) of part t of ``parts`` equal ranges of 0..n (starts on multiples of 16)."""
    step = ((n + parts - 1) // parts + 15) // 16 * 16
    return min(t * step, n), min((t + 1) * step, n)
