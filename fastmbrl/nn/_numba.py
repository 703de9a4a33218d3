"""Numba inference forward pass of the ensemble MLP over the flat parameter layout.

Design
------
* One call runs one member on one contiguous block of rows: ``x (rows, D0) -> out (rows, DL)``. The
  planning rollout calls it from its own compiled loop once per member block per horizon step, so no
  Python is crossed inside a rollout.
* Matmuls go through ``np.dot`` on 2-D contiguous slices (scipy's OpenBLAS sgemm/dgemm, PERF.md).
* Bias + activation is one fused loop over the matmul output. For float32 SiLU the exponential is a
  polynomial in two vectorizable passes (libm ``expf`` does not vectorize; PERF.md measured SiLU
  costing as much as the matmuls at width 64). float64 uses ``math.exp`` (tests and gradient
  checks).
* The caller allocates everything: two hidden buffers ``h0``/``h1`` and ``ebuf`` (the SiLU scratch),
  each a 1-D array of at least ``rows * max(hidden widths)`` elements; nothing is allocated here.
"""
import math

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True, fastmath=True, error_model="numpy")

# exp(t) = 2**n * exp(r), n = round(t / ln 2), |r| <= ln2 / 2; Cody-Waite split of ln 2 keeps r
# exact to float32 rounding, and a degree-6 Taylor polynomial gives ~2e-7 relative error on that
# interval.
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125
_LN2_LO = 1.428606820309417e-06
_EXP_CLAMP = 87.0


@njit(**_JIT)
def _silu_bias_f32(h, b, ebuf):
    """In place ``h = silu(h + b)`` for float32 with a vectorizable polynomial exponential.

    Parameters
    ----------
    h : float32 array (rows, D), C-contiguous; overwritten
    b : float32 array (D,)
    ebuf : float32 array (>= 2 * rows * D,), scratch

    Notes
    -----
    Pass 1 stores ``z = h + b``, the polynomial part of ``exp(-z)`` and the integer bits of
    ``2**n``; pass 2 multiplies by ``2**n`` read through an int32 view. Splitting lets both loops
    vectorize.
    """
    rows, d = h.shape
    n = rows * d
    poly = ebuf[:n].reshape((rows, d))
    bits = ebuf[n:2 * n].view(np.int32).reshape((rows, d))
    # float32 literals keep the loop in single precision (8 lanes per AVX2 op instead of 4)
    log2e = np.float32(_LOG2E)
    ln2_hi = np.float32(_LN2_HI)
    ln2_lo = np.float32(_LN2_LO)
    lo = np.float32(-_EXP_CLAMP)
    hi = np.float32(_EXP_CLAMP)
    half = np.float32(0.5)
    one = np.float32(1.0)
    c2 = np.float32(0.5)
    c3 = np.float32(1.0 / 6.0)
    c4 = np.float32(1.0 / 24.0)
    c5 = np.float32(1.0 / 120.0)
    c6 = np.float32(1.0 / 720.0)
    for i in range(rows):
        for j in range(d):
            z = h[i, j] + b[j]
            h[i, j] = z
            t = min(max(-z, lo), hi)
            k = np.floor(t * log2e + half)
            r = t - k * ln2_hi - k * ln2_lo
            poly[i, j] = one + r * (one + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * c6)))))
            bits[i, j] = (np.int32(k) + np.int32(127)) << np.int32(23)
    scale = ebuf[n:2 * n].reshape((rows, d))
    for i in range(rows):
        for j in range(d):
            h[i, j] = h[i, j] / (np.float32(1.0) + poly[i, j] * scale[i, j])


@njit(**_JIT)
def _exp_inplace(x, ebuf):
    """In place ``x = exp(x)`` on a 1-D array; float32 through the vectorizable polynomial.

    Parameters
    ----------
    x : float array (n,), C-contiguous; overwritten
    ebuf : float array (>= n,) of the same dtype, scratch (float32 only)

    Notes
    -----
    float32: arguments are clamped to [-87, 87] (the result stays a normal float32), relative
    error about 2e-7; float64 calls ``math.exp`` per element.
    """
    n = x.shape[0]
    if x.itemsize != 4:
        for i in range(n):
            x[i] = math.exp(x[i])
        return
    bits = ebuf[:n].view(np.int32)
    log2e = np.float32(_LOG2E)
    ln2_hi = np.float32(_LN2_HI)
    ln2_lo = np.float32(_LN2_LO)
    lo = np.float32(-_EXP_CLAMP)
    hi = np.float32(_EXP_CLAMP)
    half = np.float32(0.5)
    one = np.float32(1.0)
    c2 = np.float32(0.5)
    c3 = np.float32(1.0 / 6.0)
    c4 = np.float32(1.0 / 24.0)
    c5 = np.float32(1.0 / 120.0)
    c6 = np.float32(1.0 / 720.0)
    for i in range(n):
        t = min(max(x[i], lo), hi)
        k = np.floor(t * log2e + half)
        r = t - k * ln2_hi - k * ln2_lo
        x[i] = one + r * (one + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * c6)))))
        bits[i] = (np.int32(k) + np.int32(127)) << np.int32(23)
    scale = ebuf[:n]
    for i in range(n):
        x[i] = x[i] * scale[i]


@njit(**_JIT)
def _bias_activation(h, b, activation, ebuf):
    """In place ``h = act(h + b)`` (fused); ``activation`` is a code of ``_config.ACTIVATIONS``.

    Parameters
    ----------
    h : float array (rows, D), C-contiguous; overwritten
    b : float array (D,)
    activation : int, 0 identity, 1 relu, 2 tanh, 3 silu
    ebuf : float array (>= 2 * rows * D,), scratch used by float32 SiLU
    """
    rows, d = h.shape
    if activation == 3 and h.itemsize == 4:
        _silu_bias_f32(h, b, ebuf)
        return
    for i in range(rows):
        for j in range(d):
            z = h[i, j] + b[j]
            if activation == 1:
                z = max(z, 0.0)
            elif activation == 2:
                z = math.tanh(z)
            elif activation == 3:
                z = z / (1.0 + math.exp(-z))
            h[i, j] = z


@njit(**_JIT)
def _mlp_forward_flat(flat, layer_dims, n_members, member, activation, x, out, h0, h1, ebuf):
    """Forward pass of one ensemble member over a block of rows (inference only).

    Parameters
    ----------
    flat : float array (n_params,)
        All members' parameters in the layout of ``fastmbrl.nn._flat``.
    layer_dims : int64 array (L+1,)
        ``(D0, D1, ..., DL)``.
    n_members : int
        E, members stored in ``flat``.
    member : int
        The member to run, ``0 <= member < E``.
    activation : int
        Hidden activation code (``fastmbrl._config.ACTIVATIONS``); the last layer is linear.
    x : float array (rows, D0), C-contiguous
    out : float array (rows, DL), C-contiguous, written
    h0, h1 : float arrays (>= rows * max(D1..D_{L-1}),), scratch
    ebuf : float array (>= 2 * rows * max(D1..D_{L-1}),), scratch for the fused SiLU

    Notes
    -----
    ``h_{l+1} = act(h_l W_l[member] + b_l[member])`` for hidden layers, ``out = h_{L-1} W + b``
    last.
    """
    rows = x.shape[0]
    n_layers = layer_dims.shape[0] - 1
    offset = 0
    src = x
    for layer in range(n_layers):
        fan_in = layer_dims[layer]
        fan_out = layer_dims[layer + 1]
        w_size = fan_in * fan_out
        w_start = offset + member * w_size
        w = flat[w_start:w_start + w_size].reshape((fan_in, fan_out))
        offset += n_members * w_size
        b_start = offset + member * fan_out
        b = flat[b_start:b_start + fan_out]
        offset += n_members * fan_out
        if layer == n_layers - 1:
            np.dot(src, w, out)
            for i in range(rows):
                for j in range(fan_out):
                    out[i, j] += b[j]
        else:
            buf = h0 if layer % 2 == 0 else h1
            dst = buf[:rows * fan_out].reshape((rows, fan_out))
            np.dot(src, w, dst)
            _bias_activation(dst, b, activation, ebuf)
            src = dst
