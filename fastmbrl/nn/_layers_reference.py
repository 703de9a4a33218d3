"""NumPy twins of ``fastmbrl.nn._layers_kernels``: same names, same signatures, same results
(up to rounding).

Vectorized NumPy; the ground truth the Numba kernels are tested against. See ``_layers_kernels``
for the conventions (block order LayerNorm -> linear -> dropout -> activation, float64
statistics, overwritten gradients, the counter-based dropout mask, the cache layout).
"""
import numpy as np

from fastmbrl.nn._mlp_reference import _bias_grad, _layer  # noqa: F401 (twins by name)
from fastmbrl.nn._reference import _activation_derivative, _activation_forward

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO53 = 9007199254740992.0
RED_MIN = 0
RED_MEAN = 1


# --------------------------------------------------------------------------------------------- RNG
def _mix64(z):
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _keep_threshold(p):
    return np.uint64(np.ceil(p * _TWO53))


def _dropout_mask(key, counter, p, mask_out):
    """Twin: element (r, j) kept iff (splitmix64(key + (counter + r D + j) golden) >> 11) 2^-53 >= p."""
    R, D = mask_out.shape
    n = np.uint64(counter) + np.arange(R * D, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = _mix64(np.uint64(key) + n * _GOLDEN)
    mask_out[...] = ((x >> np.uint64(11)) >= _keep_threshold(p)).reshape(R, D)


def _dropout_forward(x, p, key, counter, y_out, mask_out):
    """Twin: y = x mask / (1 - p); p = 0 copies x."""
    if p == 0.0:
        mask_out[...] = 1
        y_out[...] = x
        return
    _dropout_mask(key, counter, p, mask_out)
    _apply_mask(x, mask_out, p, y_out)


def _apply_mask(g, mask, p, out):
    s = out.dtype.type(1.0 / (1.0 - p))
    out[...] = np.where(mask != 0, g * s, out.dtype.type(0.0))


def _dropout_backward(dy, mask, p, dx_out):
    """Twin: dx = dy mask / (1 - p); p = 0 copies dy."""
    if p == 0.0:
        dx_out[...] = dy
        return
    _apply_mask(dy, mask, p, dx_out)


# ------------------------------------------------------------------------ layer normalization
def _layernorm_forward(x, gain, bias, eps, y_out, mean_out, rstd_out):
    """Twin: statistics in float64, one rounding to the dtype."""
    x64 = np.asarray(x, dtype=np.float64)
    mu = x64.mean(axis=1)
    var = ((x64 - mu[:, None]) ** 2).mean(axis=1)
    rs = 1.0 / np.sqrt(var + eps)
    n = (x64 - mu[:, None]) * rs[:, None]
    mean_out[...] = mu
    rstd_out[...] = rs
    if gain.shape[0] > 0:
        y_out[...] = n * gain + bias
    else:
        y_out[...] = n


def _layernorm_backward(dy, x, gain, mean, rstd, dx_out, dgain_out, dbias_out):
    """Twin: dx = rstd (g - mean(g) - n mean(g n)), g = dy gain; gain/bias gradients overwritten."""
    dy = np.array(dy)                        # dx_out may be dy
    x64 = np.asarray(x, dtype=np.float64)
    rs = np.asarray(rstd, dtype=np.float64)[:, None]
    n = (x64 - np.asarray(mean, dtype=np.float64)[:, None]) * rs
    g = dy.astype(np.float64)
    if gain.shape[0] > 0:
        dgain_out[...] = (dy * n).sum(axis=0)
        dbias_out[...] = dy.sum(axis=0)
        g = g * gain
    dx_out[...] = rs * (g - g.mean(axis=1, keepdims=True) - n * (g * n).mean(axis=1, keepdims=True))


# ---------------------------------------------------------------------------- activations
def _act_into(z, h, act_code):
    h[...] = _activation_forward(np.asarray(z), act_code)


def _act_backward_into(dh, z, h, act_code, dz_out):
    if act_code == 2:
        dz_out[...] = dh * (1 - h * h)
    else:
        dz_out[...] = dh * _activation_derivative(np.asarray(z), act_code)


# ------------------------------------------------------------------- the fused block (one member)
def _block_forward(flat, dims, ensemble_size, e, l, act_code, ln_eps, gain, bias, p, key, counter,
                   x, u_out, mean_out, rstd_out, mask_out, z_out, h_out):
    """Twin: h = act(dropout(LN(x) W_l + b_l))."""
    W, b = _layer(flat, dims, ensemble_size, e, l)
    if ln_eps > 0.0:
        _layernorm_forward(x, gain, bias, ln_eps, u_out, mean_out, rstd_out)
        a = u_out @ W + b
    else:
        a = x @ W + b
    if p > 0.0:
        _dropout_mask(key, counter, p, mask_out)
        _apply_mask(a, mask_out, p, z_out)
    else:
        z_out[...] = a
    _act_into(z_out, h_out, act_code)


def _block_backward(flat, dims, ensemble_size, e, l, act_code, ln_eps, gain, p, x, u, mean, rstd,
                    mask, z, h, dh, want_grads, grad_flat, dgain_out, dbias_out, want_dx, dx_out,
                    da_buf):
    """Twin of the block's backward pass."""
    _act_backward_into(dh, z, h, act_code, da_buf)
    if p > 0.0:
        _apply_mask(da_buf, mask, p, da_buf)
    W, _ = _layer(flat, dims, ensemble_size, e, l)
    ln = ln_eps > 0.0
    if want_grads:
        gW, gb = _layer(grad_flat, dims, ensemble_size, e, l)
        gW[...] = (u if ln else x).T @ da_buf
        gb[...] = da_buf.sum(axis=0)
    if want_dx or (ln and gain.shape[0] > 0 and want_grads):
        dx_out[...] = da_buf @ W.T
        if ln:
            _layernorm_backward(dx_out, x, gain, mean, rstd, dx_out, dgain_out, dbias_out)


# ------------------------------------------------------------- one member: a chain of blocks
def _cache_sizes(dims, R):
    dims = [int(d) for d in dims]
    nf = sum(R * dims[l] + 2 * R + 2 * R * dims[l + 1] for l in range(len(dims) - 1))
    nm = sum(R * dims[l + 1] for l in range(len(dims) - 1))
    return nf, nm


def _cache_views(cbuf, mbuf, dims, R, l):
    dims = [int(d) for d in dims]
    of = sum(R * dims[k] + 2 * R + 2 * R * dims[k + 1] for k in range(l))
    om = sum(R * dims[k + 1] for k in range(l))
    din, dout = dims[l], dims[l + 1]
    u = cbuf[of: of + R * din].reshape(R, din)
    of += R * din
    mean, rstd = cbuf[of: of + R], cbuf[of + R: of + 2 * R]
    of += 2 * R
    z = cbuf[of: of + R * dout].reshape(R, dout)
    h = cbuf[of + R * dout: of + 2 * R * dout].reshape(R, dout)
    return u, mean, rstd, z, h, mbuf[om: om + R * dout].reshape(R, dout)


def _member_forward(flat, dims, ensemble_size, e, act_code, ln_eps, p_drop, key, counter, x, cbuf,
                    mbuf):
    """Twin: the chain of blocks of member e; returns the output view."""
    L = len(dims) - 1
    R = x.shape[0]
    none = flat[0:0]
    nm = _cache_sizes(dims, R)[1]
    base = np.uint64(counter) + np.uint64(e) * np.uint64(nm)
    om = 0
    inp = x
    for l in range(L):
        u, mean, rstd, z, h, mask = _cache_views(cbuf, mbuf, dims, R, l)
        _block_forward(flat, dims, ensemble_size, e, l, act_code if l < L - 1 else 0, ln_eps[l],
                       none, none, p_drop[l], key, base + np.uint64(om), inp, u, mean, rstd, mask,
                       z, h)
        om += R * int(dims[l + 1])
        inp = h
    return inp


def _member_backward(flat, dims, ensemble_size, e, act_code, ln_eps, p_drop, x, cbuf, mbuf, dy,
                     want_grads, grad_flat, want_dx, dx_out, dbuf):
    """Twin of the member's backward pass (allocates its scratch; dbuf unused)."""
    L = len(dims) - 1
    R = x.shape[0]
    none = grad_flat[0:0]
    d = np.array(dy)
    for l in range(L - 1, -1, -1):
        u, mean, rstd, z, h, mask = _cache_views(cbuf, mbuf, dims, R, l)
        inp = x if l == 0 else _cache_views(cbuf, mbuf, dims, R, l - 1)[4]
        dx = dx_out if l == 0 else np.empty((R, int(dims[l])), dtype=z.dtype)
        _block_backward(flat, dims, ensemble_size, e, l, act_code if l < L - 1 else 0, ln_eps[l],
                        none, p_drop[l], inp, u, mean, rstd, mask, z, h, d, want_grads, grad_flat,
                        none, none, want_dx if l == 0 else True, dx, np.empty_like(d))
        d = dx


# --------------------------------------------------------------------------- ensembles of critics
def _concat_into(obs, act, x_out):
    x_out[...] = np.concatenate([obs, act], axis=1)


def _ensemble_forward(flat, dims, ensemble_size, act_code, ln_eps, p_drop, key, counter, x, cbuf,
                      mbuf, q_out):
    """Twin: q_out (K, B), the subset pass over every member."""
    _ensemble_forward_subset(flat, dims, ensemble_size, np.arange(ensemble_size), act_code, ln_eps,
                             p_drop, key, counter, x, cbuf, mbuf, q_out)


def _ensemble_forward_subset(flat, dims, ensemble_size, members, act_code, ln_eps, p_drop, key,
                             counter, x, cbuf, mbuf, q_out):
    """Twin: q_out (n, B), the members ``members`` one after the other."""
    for i, e in enumerate(members):
        out = _member_forward(flat, dims, ensemble_size, int(e), act_code, ln_eps, p_drop, key,
                              counter, x, cbuf[i], mbuf[i])
        q_out[i] = out[:, 0]


def _ensemble_backward(flat, dims, ensemble_size, act_code, ln_eps, p_drop, x, cbuf, mbuf, dq,
                       want_grads, grad_flat, want_dx, dxk, dx_out, dbuf):
    """Twin: every member's backward pass; dx_out = sum over members of the input gradients."""
    B = x.shape[0]
    for e in range(ensemble_size):
        if want_grads or np.any(dq[e] != 0):
            _member_backward(flat, dims, ensemble_size, e, act_code, ln_eps, p_drop, x, cbuf[e],
                             mbuf[e], dq[e].reshape(B, 1), want_grads, grad_flat, want_dx, dxk[e],
                             dbuf[e])
        elif want_dx:
            dxk[e] = 0.0
    if want_dx:
        dx_out[...] = dxk[0]
        for e in range(1, ensemble_size):
            dx_out += dxk[e]


def _draw_subset(key, counter, K, idx_out):
    """Twin: n distinct members in draw order (0..K-1 when n == K)."""
    n = idx_out.size
    if n == K:
        idx_out[...] = np.arange(K)
        return
    x = _mix64(np.uint64(key) + (np.uint64(counter) + np.arange(n, dtype=np.uint64)) * _GOLDEN)
    left = list(range(K))
    for i in range(n):
        t = int(((x[i] >> np.uint64(32)) * np.uint64(K - i)) >> np.uint64(32))
        idx_out[i] = left.pop(t)


def _ensemble_reduce(q, idx, reduction, out, arg_out):
    """Twin: min over q[idx] (first minimum in idx order) or mean over all members."""
    if reduction == 0:
        sub = q[np.asarray(idx)]
        k = np.argmin(sub, axis=0)            # argmin returns the first minimum
        out[...] = sub[k, np.arange(q.shape[1])]
        arg_out[...] = np.asarray(idx)[k]
    else:
        out[...] = np.asarray(q, dtype=np.float64).mean(axis=0)
        arg_out[...] = -1


def _ensemble_reduce_backward(reduction, arg, w, dq_out):
    """Twin: w to the argmin member (min) or w / K to all (mean)."""
    K, B = dq_out.shape
    if reduction == 0:
        dq_out[...] = 0.0
        dq_out[np.asarray(arg), np.arange(B)] = w
    else:
        dq_out[...] = np.asarray(w, dtype=np.float64)[None, :] / K


def _ensemble_mse_grad(q, y, scale, dq_out):
    """Twin: scale sum_e mean_b (q - y)^2 and its gradient."""
    d = np.asarray(q, dtype=np.float64) - np.asarray(y, dtype=np.float64)[None, :]
    B = q.shape[1]
    dq_out[...] = 2.0 * scale / B * d
    return float(scale * np.sum(d * d) / B)


def _ensemble_mse_loss_grad(flat, dims, ensemble_size, act_code, ln_eps, p_drop, key, counter, x, y,
                            scale, cbuf, mbuf, dbuf, q_out, dq_out, grad_out):
    """Twin: forward, loss, backward of the critic ensemble."""
    _ensemble_forward(flat, dims, ensemble_size, act_code, ln_eps, p_drop, key, counter, x, cbuf,
                      mbuf, q_out)
    loss = _ensemble_mse_grad(q_out, y, scale, dq_out)
    B = x.shape[0]
    _ensemble_backward(flat, dims, ensemble_size, act_code, ln_eps, p_drop, x, cbuf, mbuf, dq_out,
                       True, grad_out, False, np.empty((ensemble_size, B, 0), dtype=x.dtype),
                       np.empty((B, 0), dtype=x.dtype), dbuf)
    return loss
