"""Numba kernels of DHMBPO's layers: layer normalization, inverted dropout, the fused
"LayerNorm -> linear -> dropout -> activation" block, and ensembles of K critics.

Design
------
- The block follows DHMBPO's public code (erl_lib ``NormalizedEnsembleLinear``): the layer
  normalization acts on the *input* of a linear layer, dropout on its output (after the bias),
  the activation last: ``h_out = act(dropout(LN(h_in) W + b))``. A network is a chain of blocks over
  the flat layout of ``fastmbrl.nn._flat`` (block l owns ``W_l, b_l`` of member e), with per-layer
  ``ln_eps[l]`` (0 = no normalization, as erl_lib's ``0 < normalize_eps`` test) and ``p_drop[l]``
  (0 = no dropout). DHMBPO's normalization has no gain and bias (``elementwise_affine=False``), so
  the flat layout needs nothing new; the standalone normalization kernels and the block also take
  a learnable gain and bias, and treat empty (0,) arrays as "no affine".
- Layer-normalization statistics (mean, biased variance, and the two row sums of the backward
  pass) are accumulated in float64 whatever the array dtype, then the result is rounded once to
  the dtype: float32 outputs are then correctly rounded or nearly, within ~1e-7 of a float64
  computation (torch's own float32 kernel is the less accurate side of a comparison). The
  gain/bias gradients (column sums over rows, vectorized across columns) accumulate in the dtype,
  as every other bias gradient here (``_sac_kernels._bias_grad``).
- Gradients of parameters are *overwritten*, never accumulated (``np.dot(..., out=)`` for the
  weights, column sums for biases, gain and bias of the normalization), as in ``_sac_kernels``.
  Callers that split rows across threads keep one gradient buffer per part and add them.
- Dropout is inverted dropout (kept values scaled by 1 / (1 - p), torch's ``nn.Dropout``) with a
  counter-based mask: element n of a mask (C order, counted from ``counter``) is kept iff
  ``u_n = (splitmix64(key + n * golden) >> 11) 2^-53 >= p`` (splitmix64 as ``_sac_kernels``).
  The mask is a pure function of (key, counter, position), so any row or member split, on any
  thread count, draws the same mask; p = 0 takes a separate path that never touches the values.
  Member e's masks of an R-row pass start at ``counter + e * n_mask`` (``_cache_sizes``).
- Everything a pass keeps for its backward pass lives in caller-made buffers (``_cache_sizes``,
  ``_cache_views``): one float buffer and one uint8 mask buffer per member; the backward pass needs
  a float scratch of 2 R max(D_1..D_L). No inner kernel allocates. Matrix products are ``np.dot``
  on C-contiguous 2-D views (scipy's BLAS, one thread: the callers pin it), element-wise work is
  plain loops that LLVM vectorizes; activation codes are those of ``fastmbrl._config.ACTIVATIONS``
  (0 identity, 1 ReLU, 2 tanh, 3 SiLU; the last layer of a network is linear).
- ``_ensemble_forward`` (``_ensemble_forward_subset``: some of the members) and
  ``_ensemble_backward`` run the members in ``prange`` (each member writes only its own buffers
  and its own slices of the gradient), and anything summed over members is summed after the loop
  in member order: results are bit-identical on 1 or 2 threads. Inside
  another parallel region call ``_member_forward``/``_member_backward`` per member instead (no
  nested parallelism). BLAS must be held to one thread meanwhile (threadpoolctl, after importing
  ``scipy.linalg.cython_blas`` so that it sees the library Numba calls): a 2-thread OpenBLAS
  beside the Numba team made the critic step 15x slower on 2 busy cores.
- Argument types: pass ``key``/``counter`` as ``np.uint64`` and ``ln_eps``/``p_drop`` as float64
  arrays (other types compile other specializations of the whole chain; the first call of an
  ensemble kernel compiles for 10-30 s, cached on disk afterwards).
- Nothing validates: callers check shapes and dtypes. Every function has a NumPy twin of the same
  name and signature in ``_layers_reference.py``.
"""
import math

import numpy as np
from numba import njit, prange

from fastmbrl.nn._mlp_kernels import _bias_grad, _layer
from fastmbrl.nn._numba import _exp_f32

_JIT = dict(cache=True, nogil=True, fastmath=True, error_model="numpy")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO53 = 9007199254740992.0
RED_MIN = 0    # ensemble reduction codes of ``_ensemble_reduce``
RED_MEAN = 1


# --------------------------------------------------------------------------------------------- RNG
@njit(**_JIT)
def _mix64(z):
    """splitmix64's finalizer (the generator of ``_sac_kernels``)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(**_JIT)
def _keep_threshold(p):
    """Integer threshold t with ``(x >> 11) >= t  <=>  (x >> 11) 2^-53 >= p`` (0 for p = 0)."""
    return np.uint64(math.ceil(p * _TWO53))


@njit(**_JIT)
def _dropout_mask(key, counter, p, mask_out):
    """Fill the dropout keep-mask ``mask_out`` (R, D) uint8 (1 keep, 0 drop) for rate p.

    Parameters
    ----------
    key, counter : uint64 (int64 accepted)
        Stream key and the counter of element (0, 0); element (r, j) uses ``counter + r D + j``
        whatever the memory layout of ``mask_out``.
    p : float
        Drop rate, 0 <= p < 1; kept iff ``(splitmix64(key + n golden) >> 11) 2^-53 >= p``.
    mask_out : uint8 array (R, D), written
    """
    k = np.uint64(key)
    c = np.uint64(counter)
    thr = _keep_threshold(p)
    R, D = mask_out.shape
    one = np.uint8(1)
    zero = np.uint8(0)
    for r in range(R):
        base = c + np.uint64(r * D)
        for j in range(D):
            x = _mix64(k + (base + np.uint64(j)) * _GOLDEN)
            mask_out[r, j] = one if (x >> np.uint64(11)) >= thr else zero


@njit(**_JIT)
def _dropout_forward(x, p, key, counter, y_out, mask_out):
    """Inverted dropout: ``y = x mask / (1 - p)`` with the mask of ``_dropout_mask``.

    Parameters
    ----------
    x : float array (R, D), any layout
    p : float, 0 <= p < 1
    key, counter : uint64, see ``_dropout_mask``
    y_out : float array (R, D), written (may be x itself)
    mask_out : uint8 array (R, D), written (all ones when p = 0)

    Notes
    -----
    p = 0 copies x exactly (no multiplication). The scale 1 / (1 - p) is rounded once to x's dtype,
    then multiplies the kept values (as torch's ``dropout``).
    """
    R, D = x.shape
    if p == 0.0:
        for r in range(R):
            for j in range(D):
                y_out[r, j] = x[r, j]
                mask_out[r, j] = 1
        return
    _dropout_mask(key, counter, p, mask_out)
    _apply_mask(x, mask_out, p, y_out)


@njit(**_JIT)
def _apply_mask(g, mask, p, out):
    """out = g mask / (1 - p) element-wise (out may be g); p > 0."""
    R, D = g.shape
    s = out.dtype.type(1.0 / (1.0 - p))
    zero = out.dtype.type(0.0)
    for r in range(R):
        for j in range(D):
            out[r, j] = g[r, j] * s if mask[r, j] != 0 else zero


@njit(**_JIT)
def _dropout_backward(dy, mask, p, dx_out):
    """Gradient of ``_dropout_forward``: ``dx = dy mask / (1 - p)``; p = 0 copies dy exactly.

    dy (R, D), mask uint8 (R, D) from the forward pass, dx_out (R, D) written (may be dy itself).
    """
    R, D = dy.shape
    if p == 0.0:
        for r in range(R):
            for j in range(D):
                dx_out[r, j] = dy[r, j]
        return
    _apply_mask(dy, mask, p, dx_out)


# ------------------------------------------------------------------------ layer normalization
@njit(**_JIT)
def _layernorm_forward(x, gain, bias, eps, y_out, mean_out, rstd_out):
    """Layer normalization over the feature axis (torch.nn.functional.layer_norm).

    Parameters
    ----------
    x : float array (B, D), any layout
    gain, bias : float arrays (D,), or both (0,) for no affine (torch's elementwise_affine=False)
    eps : float > 0, added to the biased variance
    y_out : float array (B, D), written: ``(x - mean) rstd gain + bias`` (may be x itself)
    mean_out, rstd_out : float arrays (B,), written: row mean and 1 / sqrt(var + eps)

    Notes
    -----
    Statistics in float64 (two passes: mean, then the centered sum of squares), one rounding to the
    dtype at the end.
    """
    B, D = x.shape
    affine = gain.shape[0] > 0
    for r in range(B):
        s = 0.0
        for j in range(D):
            s += x[r, j]
        mu = s / D
        v = 0.0
        for j in range(D):
            d = x[r, j] - mu
            v += d * d
        rs = 1.0 / math.sqrt(v / D + eps)
        mean_out[r] = mu
        rstd_out[r] = rs
        if affine:
            for j in range(D):
                y_out[r, j] = (x[r, j] - mu) * rs * gain[j] + bias[j]
        else:
            for j in range(D):
                y_out[r, j] = (x[r, j] - mu) * rs


@njit(**_JIT)
def _layernorm_backward(dy, x, gain, mean, rstd, dx_out, dgain_out, dbias_out):
    """Gradient of ``_layernorm_forward`` from the forward pass's input x and statistics.

    Parameters
    ----------
    dy : float array (B, D), gradient at y
    x : float array (B, D), the forward pass's input
    gain : float array (D,), or (0,) for no affine
    mean, rstd : float arrays (B,), from the forward pass
    dx_out : float array (B, D), written (may be dy itself: rows are read before written)
    dgain_out, dbias_out : float arrays (D,), overwritten with sum_r dy n and sum_r dy
        (n = (x - mean) rstd); not touched without affine (pass (0,) arrays)

    Notes
    -----
    ``dx = rstd (g - mean_j(g) - n mean_j(g n))`` with g = dy gain; the two row means in float64.
    """
    B, D = x.shape
    affine = gain.shape[0] > 0
    if affine:
        for j in range(D):
            dgain_out[j] = 0.0
            dbias_out[j] = 0.0
    for r in range(B):
        mu = np.float64(mean[r])
        rs = np.float64(rstd[r])
        a = 0.0
        c = 0.0
        if affine:
            for j in range(D):
                n = (x[r, j] - mu) * rs
                g = dy[r, j] * np.float64(gain[j])
                a += g
                c += g * n
                dgain_out[j] += dy[r, j] * n
                dbias_out[j] += dy[r, j]
            a /= D
            c /= D
            for j in range(D):
                n = (x[r, j] - mu) * rs
                dx_out[r, j] = rs * (dy[r, j] * np.float64(gain[j]) - a - n * c)
        else:
            for j in range(D):
                n = (x[r, j] - mu) * rs
                g = np.float64(dy[r, j])
                a += g
                c += g * n
            a /= D
            c /= D
            for j in range(D):
                n = (x[r, j] - mu) * rs
                dx_out[r, j] = rs * (dy[r, j] - a - n * c)


# ---------------------------------------------------------------------------- activations
@njit(**_JIT)
def _act_into(z, h, act_code):
    """h = act(z) element-wise (R, D); h may be z. One loop per code (a branch inside the loop
    keeps LLVM from vectorizing it); float32 SiLU uses the polynomial ``_exp_f32``."""
    R, D = z.shape
    zero = h.dtype.type(0.0)
    one = h.dtype.type(1.0)
    if act_code == 1:
        for r in range(R):
            for j in range(D):
                h[r, j] = max(z[r, j], zero)
    elif act_code == 2:
        for r in range(R):
            for j in range(D):
                h[r, j] = np.tanh(z[r, j])
    elif act_code == 3:
        if z.itemsize == 4:
            for r in range(R):
                for j in range(D):
                    v = z[r, j]
                    h[r, j] = v / (one + _exp_f32(-v))
        else:
            for r in range(R):
                for j in range(D):
                    v = z[r, j]
                    h[r, j] = v / (1.0 + math.exp(-v))
    else:
        for r in range(R):
            for j in range(D):
                h[r, j] = z[r, j]


@njit(**_JIT)
def _act_backward_into(dh, z, h, act_code, dz_out):
    """dz = dh act'(z) (R, D): ReLU from z > 0, tanh from 1 - h^2, SiLU from sigmoid(z); dz_out
    may be dh."""
    R, D = dh.shape
    zero = dz_out.dtype.type(0.0)
    one = dz_out.dtype.type(1.0)
    if act_code == 1:
        for r in range(R):
            for j in range(D):
                dz_out[r, j] = dh[r, j] if z[r, j] > zero else zero
    elif act_code == 2:
        for r in range(R):
            for j in range(D):
                dz_out[r, j] = dh[r, j] * (one - h[r, j] * h[r, j])
    elif act_code == 3:
        if z.itemsize == 4:
            for r in range(R):
                for j in range(D):
                    v = z[r, j]
                    s = one / (one + _exp_f32(-v))
                    dz_out[r, j] = dh[r, j] * s * (one + v * (one - s))
        else:
            for r in range(R):
                for j in range(D):
                    v = z[r, j]
                    s = 1.0 / (1.0 + math.exp(-v))
                    dz_out[r, j] = dh[r, j] * s * (1.0 + v * (1.0 - s))
    else:
        for r in range(R):
            for j in range(D):
                dz_out[r, j] = dh[r, j]


# ------------------------------------------------------------------- the fused block (one member)
@njit(**_JIT)
def _block_forward(flat, dims, ensemble_size, e, l, act_code, ln_eps, gain, bias, p, key, counter,
                   x, u_out, mean_out, rstd_out, mask_out, z_out, h_out):
    """One block of member e at layer l: ``h = act(dropout(LN(x) W_l + b_l))``.

    Parameters
    ----------
    flat : float array, the flat layout (``fastmbrl.nn._flat``); dims int64 (L+1,); ensemble_size E
    e, l : int, member and layer
    act_code : int, 0 identity, 1 ReLU, 2 tanh, 3 SiLU
    ln_eps : float, > 0 normalizes x first (eps of the variance), 0 skips the normalization
    gain, bias : float arrays (D_l,) of the normalization, or (0,) for none (DHMBPO)
    p : float, dropout rate on the linear output, 0 <= p < 1 (0: no dropout)
    key, counter : uint64, dropout stream (see ``_dropout_mask``; element (r, j) of this block's
        mask uses ``counter + r D_l+1 + j``)
    x : float array (R, D_l), C-contiguous
    u_out : (R, D_l) the normalized input (the matmul's input), mean_out, rstd_out : (R,); written
        only when ln_eps > 0
    mask_out : uint8 (R, D_l+1), written only when p > 0
    z_out : (R, D_l+1), written: the pre-activation ``dropout(LN(x) W + b)``
    h_out : (R, D_l+1), written: act(z); may be z_out itself when act_code is 0
    """
    W, b = _layer(flat, dims, ensemble_size, e, l)
    if ln_eps > 0.0:
        _layernorm_forward(x, gain, bias, ln_eps, u_out, mean_out, rstd_out)
        np.dot(u_out, W, z_out)
    else:
        np.dot(x, W, z_out)
    R, D = z_out.shape
    if p > 0.0:
        _dropout_mask(key, counter, p, mask_out)
        s = z_out.dtype.type(1.0 / (1.0 - p))
        zero = z_out.dtype.type(0.0)
        for r in range(R):
            for j in range(D):
                z_out[r, j] = (z_out[r, j] + b[j]) * s if mask_out[r, j] != 0 else zero
    else:
        for r in range(R):
            for j in range(D):
                z_out[r, j] += b[j]
    _act_into(z_out, h_out, act_code)


@njit(**_JIT)
def _block_backward(flat, dims, ensemble_size, e, l, act_code, ln_eps, gain, p, x, u, mean, rstd,
                    mask, z, h, dh, want_grads, grad_flat, dgain_out, dbias_out, want_dx, dx_out,
                    da_buf):
    """Backward pass of ``_block_forward`` (same e, l, act_code, ln_eps, gain, p; its x and outputs).

    Parameters
    ----------
    dh : float array (R, D_l+1), gradient at h (any layout)
    want_grads : bool; member e's W_l, b_l gradients are then overwritten in grad_flat (flat's
        layout), and the normalization's gain/bias gradients in dgain_out, dbias_out (D_l,) when it
        has an affine
    want_dx : bool; the input gradient dL/dx goes to dx_out (R, D_l, C-contiguous). dx_out is also
        the scratch of the normalization's backward pass: it is written whenever want_dx, or
        want_grads with an affine normalization
    da_buf : float array (R, D_l+1), C-contiguous scratch: receives dL/d(x W + b); may be dh itself
    """
    _act_backward_into(dh, z, h, act_code, da_buf)
    if p > 0.0:
        _apply_mask(da_buf, mask, p, da_buf)
    W, _b = _layer(flat, dims, ensemble_size, e, l)
    ln = ln_eps > 0.0
    if want_grads:
        gW, gb = _layer(grad_flat, dims, ensemble_size, e, l)
        if ln:
            np.dot(u.T, da_buf, gW)
        else:
            np.dot(x.T, da_buf, gW)
        _bias_grad(da_buf, gb)
    affine = gain.shape[0] > 0
    if want_dx or (ln and affine and want_grads):
        np.dot(da_buf, W.T, dx_out)
        if ln:
            _layernorm_backward(dx_out, x, gain, mean, rstd, dx_out, dgain_out, dbias_out)


# ------------------------------------------------------------- one member: a chain of blocks
@njit(**_JIT)
def _cache_sizes(dims, R):
    """(floats, mask bytes) one member's R-row pass keeps (``_cache_views``)."""
    nf = 0
    nm = 0
    for l in range(dims.size - 1):
        nf += R * dims[l] + 2 * R + 2 * R * dims[l + 1]
        nm += R * dims[l + 1]
    return nf, nm


@njit(**_JIT)
def _cache_views(cbuf, mbuf, dims, R, l):
    """Views (u (R, D_l), mean (R,), rstd (R,), z (R, D_l+1), h (R, D_l+1), mask (R, D_l+1)) of
    layer l in one member's buffers cbuf (float, ``_cache_sizes()[0]``) and mbuf (uint8, ``[1]``);
    layer after layer, in that order."""
    of = 0
    om = 0
    for k in range(l):
        of += R * dims[k] + 2 * R + 2 * R * dims[k + 1]
        om += R * dims[k + 1]
    din = dims[l]
    dout = dims[l + 1]
    u = cbuf[of: of + R * din].reshape((R, din))
    of += R * din
    mean = cbuf[of: of + R]
    rstd = cbuf[of + R: of + 2 * R]
    of += 2 * R
    z = cbuf[of: of + R * dout].reshape((R, dout))
    h = cbuf[of + R * dout: of + 2 * R * dout].reshape((R, dout))
    mask = mbuf[om: om + R * dout].reshape((R, dout))
    return u, mean, rstd, z, h, mask


@njit(**_JIT)
def _member_forward(flat, dims, ensemble_size, e, act_code, ln_eps, p_drop, key, counter, x, cbuf,
                    mbuf):
    """Forward pass of member e over the rows of x (R, D_0, C-contiguous): a chain of
    ``_block_forward`` (hidden layers act_code, the last linear) keeping everything in cbuf, mbuf
    (one member's buffers, ``_cache_sizes``). Returns the (R, D_L) output view.

    ln_eps, p_drop : float64 arrays (L,), per layer (0 = off); normalization without affine.
    key, counter : uint64; mask byte i of this member (mbuf order) uses ``counter + e n_mask + i``.
    """
    L = dims.size - 1
    R = x.shape[0]
    none = flat[0:0]
    nm = _cache_sizes(dims, R)[1]
    base = np.uint64(counter) + np.uint64(e) * np.uint64(nm)
    om = 0
    for l in range(L):
        u, mean, rstd, z, h, mask = _cache_views(cbuf, mbuf, dims, R, l)
        a = act_code if l < L - 1 else 0
        c = base + np.uint64(om)
        if l == 0:
            _block_forward(flat, dims, ensemble_size, e, 0, a, ln_eps[0], none, none, p_drop[0],
                           key, c, x, u, mean, rstd, mask, z, h)
        else:
            hp = _cache_views(cbuf, mbuf, dims, R, l - 1)[4]
            _block_forward(flat, dims, ensemble_size, e, l, a, ln_eps[l], none, none, p_drop[l],
                           key, c, hp, u, mean, rstd, mask, z, h)
        om += R * dims[l + 1]
    return _cache_views(cbuf, mbuf, dims, R, L - 1)[4]


@njit(**_JIT)
def _member_backward(flat, dims, ensemble_size, e, act_code, ln_eps, p_drop, x, cbuf, mbuf, dy,
                     want_grads, grad_flat, want_dx, dx_out, dbuf):
    """Backward pass of ``_member_forward`` (same arguments, its cbuf and mbuf).

    dy (R, D_L) gradient at the output (any layout); with want_grads member e's gradients are
    overwritten in grad_flat; with want_dx dL/dx goes to dx_out (R, D_0). dbuf: float scratch of at
    least 2 R max(D_1..D_L) elements (two ping-pong halves; nothing allocated).
    """
    L = dims.size - 1
    R = x.shape[0]
    half = dbuf.size // 2
    none = grad_flat[0:0]
    for l in range(L - 1, -1, -1):
        u, mean, rstd, z, h, mask = _cache_views(cbuf, mbuf, dims, R, l)
        a = act_code if l < L - 1 else 0
        din = dims[l]
        dout = dims[l + 1]
        # dL/dh_l+1 sits in half (l+1) % 2 (dy for the top layer); d(linear output) is computed in
        # place there, and dL/dh_l goes to the other half (dx_out for layer 0)
        s = ((l + 1) % 2) * half
        da = dbuf[s: s + R * dout].reshape((R, dout))
        if l == 0:
            if l == L - 1:
                _block_backward(flat, dims, ensemble_size, e, 0, a, ln_eps[0], none, p_drop[0], x,
                                u, mean, rstd, mask, z, h, dy, want_grads, grad_flat, none, none,
                                want_dx, dx_out, da)
            else:
                _block_backward(flat, dims, ensemble_size, e, 0, a, ln_eps[0], none, p_drop[0], x,
                                u, mean, rstd, mask, z, h, da, want_grads, grad_flat, none, none,
                                want_dx, dx_out, da)
        else:
            hp = _cache_views(cbuf, mbuf, dims, R, l - 1)[4]
            s = (l % 2) * half
            dxv = dbuf[s: s + R * din].reshape((R, din))
            if l == L - 1:
                _block_backward(flat, dims, ensemble_size, e, l, a, ln_eps[l], none, p_drop[l], hp,
                                u, mean, rstd, mask, z, h, dy, want_grads, grad_flat, none, none,
                                True, dxv, da)
            else:
                _block_backward(flat, dims, ensemble_size, e, l, a, ln_eps[l], none, p_drop[l], hp,
                                u, mean, rstd, mask, z, h, da, want_grads, grad_flat, none, none,
                                True, dxv, da)


# --------------------------------------------------------------------------- ensembles of critics
@njit(**_JIT)
def _concat_into(obs, act, x_out):
    """x_out (R, O + A) = [obs | act] (the critic's input rows)."""
    R, O = obs.shape
    A = act.shape[1]
    for r in range(R):
        for j in range(O):
            x_out[r, j] = obs[r, j]
        for j in range(A):
            x_out[r, O + j] = act[r, j]


@njit(parallel=True, **_JIT)
def _ensemble_forward_subset(flat, dims, ensemble_size, members, act_code, ln_eps, p_drop, key,
                             counter, x, cbuf, mbuf, q_out):
    """Only the members ``members`` (n,) of the K-member ensemble on rows x: q_out (n, B), row i
    equal to row ``members[i]`` of ``_ensemble_forward`` with the same counter (member e's masks
    start at counter + e nm there too). cbuf (n, >= nf), mbuf (n, >= nm). A target's min over a
    random pair needs 2 of K members."""
    B = x.shape[0]
    for i in prange(members.shape[0]):
        out = _member_forward(flat, dims, ensemble_size, members[i], act_code, ln_eps, p_drop,
                              key, counter, x, cbuf[i], mbuf[i])
        for r in range(B):
            q_out[i, r] = out[r, 0]


@njit(**_JIT)
def _ensemble_forward(flat, dims, ensemble_size, act_code, ln_eps, p_drop, key, counter, x, cbuf,
                      mbuf, q_out):
    """All K = ensemble_size members (D_L = 1) on the same rows x (B, D_0): q_out (K, B).

    cbuf (K, >= nf), mbuf uint8 (K, >= nm): per-member buffers (``_cache_sizes(dims, B)``), kept for
    ``_ensemble_backward``. The subset pass over every member: member e's masks start at
    counter + e nm.
    """
    _ensemble_forward_subset(flat, dims, ensemble_size, np.arange(ensemble_size), act_code, ln_eps,
                             p_drop, key, counter, x, cbuf, mbuf, q_out)


@njit(parallel=True, **_JIT)
def _ensemble_backward(flat, dims, ensemble_size, act_code, ln_eps, p_drop, x, cbuf, mbuf, dq,
                       want_grads, grad_flat, want_dx, dxk, dx_out, dbuf):
    """Backward pass of ``_ensemble_forward`` for the cotangent dq (K, B, C-contiguous) of q.

    With want_grads every member's gradient is overwritten in grad_flat (flat's layout). With
    want_dx, dx_out (B, D_0) = sum_e dL/dx through member e, summed in member order after the
    parallel loop (dxk (K, B, D_0) scratch); members whose dq row is all zero are then skipped when
    not want_grads (a min over a subset). dbuf (K, >= 2 B max(D_1..D_L)) scratch.
    """
    K = ensemble_size
    B = x.shape[0]
    D0 = dims[0]
    for e in prange(K):
        run = want_grads
        if not run:
            for r in range(B):
                if dq[e, r] != 0.0:
                    run = True
                    break
        if run:
            _member_backward(flat, dims, K, e, act_code, ln_eps, p_drop, x, cbuf[e], mbuf[e],
                             dq[e].reshape((B, 1)), want_grads, grad_flat, want_dx, dxk[e],
                             dbuf[e])
        elif want_dx:
            for r in range(B):
                for j in range(D0):
                    dxk[e, r, j] = 0.0
    if want_dx:
        for r in range(B):
            for j in range(D0):
                dx_out[r, j] = dxk[0, r, j]
        for e in range(1, K):
            for r in range(B):
                for j in range(D0):
                    dx_out[r, j] += dxk[e, r, j]


@njit(**_JIT)
def _draw_subset(key, counter, K, idx_out):
    """n = idx_out.size distinct members of 0..K-1 (n <= K) into idx_out (int64), in draw order.

    n == K gives 0..K-1 in order (no draw: DHMBPO's K <= 2 case). Otherwise draw i picks uniformly
    among the K - i members not yet taken (Lemire's multiply-shift on the high 32 bits of
    splitmix64(key + (counter + i) golden)): a uniform ordered subset, REDQ's random pair.
    """
    n = idx_out.size
    if n == K:
        for i in range(n):
            idx_out[i] = i
        return
    k = np.uint64(key)
    c = np.uint64(counter)
    for i in range(n):
        x = _mix64(k + (c + np.uint64(i)) * _GOLDEN)
        t = np.int64(((x >> np.uint64(32)) * np.uint64(K - i)) >> np.uint64(32))
        # the t-th member (0-based) among those not drawn yet
        m = -1
        for cand in range(K):
            taken = False
            for q in range(i):
                if idx_out[q] == cand:
                    taken = True
            if not taken:
                if t == 0:
                    m = cand
                    break
                t -= 1
        idx_out[i] = m


@njit(**_JIT)
def _ensemble_reduce(q, idx, reduction, out, arg_out):
    """Reduce q (K, B) over members into out (B,).

    reduction RED_MIN (0): min over the members idx (int64 (n,), e.g. ``_draw_subset``); arg_out
    (B,) int64 gets the member taking the minimum, the first in idx order on ties (torch.min on
    ``q[idx]``). RED_MEAN (1): mean over all K members (float64 sum); arg_out is set to -1.
    """
    K, B = q.shape
    if reduction == 0:
        for r in range(B):
            m = idx[0]
            v = q[m, r]
            for i in range(1, idx.size):
                k = idx[i]
                if q[k, r] < v:
                    v = q[k, r]
                    m = k
            out[r] = v
            arg_out[r] = m
    else:
        for r in range(B):
            s = 0.0
            for k in range(K):
                s += q[k, r]
            out[r] = s / K
            arg_out[r] = -1


@njit(**_JIT)
def _ensemble_reduce_backward(reduction, arg, w, dq_out):
    """dq_out (K, B) = d(sum_r w_r out_r)/dq for ``_ensemble_reduce``'s out: RED_MIN sends w_r to
    member arg_r (zeros elsewhere), RED_MEAN gives w_r / K to every member."""
    K, B = dq_out.shape
    if reduction == 0:
        for k in range(K):
            for r in range(B):
                dq_out[k, r] = 0.0
        for r in range(B):
            dq_out[arg[r], r] = w[r]
    else:
        for k in range(K):
            for r in range(B):
                dq_out[k, r] = w[r] / K


@njit(**_JIT)
def _ensemble_mse_grad(q, y, scale, dq_out):
    """Critic loss ``scale sum_e mean_b (q_eb - y_b)^2`` (erl_lib: scale 1; SB3's SAC: 0.5) of q
    (K, B) against y (B,); returns it (float64) and writes dq_out (K, B) = 2 scale (q - y) / B."""
    K, B = q.shape
    loss = 0.0
    c = 2.0 * scale / B
    for k in range(K):
        for r in range(B):
            d = np.float64(q[k, r]) - np.float64(y[r])
            loss += d * d
            dq_out[k, r] = c * d
    return scale * loss / B


@njit(**_JIT)
def _ensemble_mse_loss_grad(flat, dims, ensemble_size, act_code, ln_eps, p_drop, key, counter, x, y,
                            scale, cbuf, mbuf, dbuf, q_out, dq_out, grad_out):
    """One critic-ensemble loss and gradient: forward of all members on x (B, D_0), loss
    ``scale sum_e mean_b (Q_e(x_b) - y_b)^2``, backward into grad_out (overwritten, flat's layout).

    Writes q_out (K, B) and its gradient dq_out (K, B, C-contiguous); cbuf, mbuf, dbuf as for
    ``_ensemble_forward`` / ``_ensemble_backward``. Returns the loss (float64). The two parallel
    kernels it calls are compiled once for every caller (a prange loop of its own doubled the
    first-call compile time for ~1% of run time).
    """
    K = ensemble_size
    B = x.shape[0]
    _ensemble_forward(flat, dims, K, act_code, ln_eps, p_drop, key, counter, x, cbuf, mbuf, q_out)
    loss = _ensemble_mse_grad(q_out, y, scale, dq_out)
    _ensemble_backward(flat, dims, K, act_code, ln_eps, p_drop, x, cbuf, mbuf, dq_out, True,
                       grad_out, False, np.empty((K, B, 0), dtype=q_out.dtype),
                       np.empty((B, 0), dtype=q_out.dtype), dbuf)
    return loss
