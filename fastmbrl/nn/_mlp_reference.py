"""NumPy twins of ``_mlp_kernels``: same names, same signatures, same results (up to rounding)."""
import numpy as np

_LOG2 = np.log(2.0)
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


def _layer(flat, dims, ensemble_size, e, l):
    off = 0
    for k in range(l):
        off += ensemble_size * (dims[k] * dims[k + 1] + dims[k + 1])
    din, dout = int(dims[l]), int(dims[l + 1])
    W = flat[off + e * din * dout: off + (e + 1) * din * dout].reshape(din, dout)
    boff = off + ensemble_size * din * dout
    return W, flat[boff + e * dout: boff + (e + 1) * dout]


def _mlp_forward(flat, dims, ensemble_size, e, act_code, x):
    L = len(dims) - 1
    acts = [x]
    for l in range(L):
        W, b = _layer(flat, dims, ensemble_size, e, l)
        z = acts[-1] @ W + b
        if l < L - 1:
            z = np.maximum(z, 0.0) if act_code == 1 else np.tanh(z)
        acts.append(z.astype(x.dtype, copy=False))
    return acts


def _mlp_backward(flat, dims, ensemble_size, e, act_code, acts, dy, grad_flat, want_grads, dx_from):
    L = len(dims) - 1
    d = dy
    dx = np.empty((dy.shape[0], 0), dtype=dy.dtype)
    for l in range(L - 1, -1, -1):
        W, _ = _layer(flat, dims, ensemble_size, e, l)
        if want_grads:
            gW, gb = _layer(grad_flat, dims, ensemble_size, e, l)
            gW[...] = acts[l].T @ d
            gb[...] = d.sum(axis=0)
        if l > 0:
            h = acts[l]
            d = (d @ W.T) * ((h > 0) if act_code == 1 else (1.0 - h * h))
        elif dx_from < dims[0]:
            dx = d @ W[dx_from:].T
    return dx


def _softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _squash_head(out, eps, log_std_min, log_std_max, scale, bias, a_out, logp_out):
    A = eps.shape[1]
    ls = np.clip(out[:, A:], log_std_min, log_std_max)
    u = out[:, :A] + np.exp(ls) * eps
    a_out[...] = scale * np.tanh(u) + bias
    logn = -0.5 * eps * eps - ls - _HALF_LOG_2PI
    logp_out[...] = (logn - 2.0 * (_LOG2 - u - _softplus(-2.0 * u))).sum(axis=1)


def _squash_head_vjp(out, eps, d_act, d_logp, log_std_min, log_std_max, scale, dout):
    """Twin of the kernel."""
    A = eps.shape[1]
    raw = out[:, A:]
    std = np.exp(np.clip(raw, log_std_min, log_std_max))
    t = np.tanh(out[:, :A] + std * eps)
    w = np.asarray(d_logp)[:, None]
    du = d_act * scale * (1.0 - t * t) + w * 2.0 * t
    inside = (raw >= log_std_min) & (raw <= log_std_max)
    dout[...] = np.concatenate([du, np.where(inside, du * std * eps - w, 0.0)], axis=1)


def _act_size(dims, R):
    """Twin of the kernel."""
    return int(R * np.sum(dims[1:]))


def _act_view(abuf, dims, R, l):
    """Twin of the kernel."""
    off = int(R * np.sum(dims[1:l]))
    return abuf[off: off + R * int(dims[l])].reshape(R, int(dims[l]))


def _forward_into(flat, dims, ensemble_size, e, act_code, x, abuf):
    """Twin of the kernel."""
    acts = _mlp_forward(flat, dims, ensemble_size, e, act_code, x)
    for l in range(1, len(dims)):
        _act_view(abuf, dims, x.shape[0], l)[...] = acts[l]
    return _act_view(abuf, dims, x.shape[0], len(dims) - 1)


def _backward_into(flat, dims, ensemble_size, e, act_code, x, abuf, r0, r1, dy, grad_flat,
                   want_grads, dx_from, dx_out, dbuf):
    """Twin of the kernel."""
    R = x.shape[0]
    acts = [x[r0:r1]] + [_act_view(abuf, dims, R, l)[r0:r1] for l in range(1, len(dims))]
    dx = _mlp_backward(flat, dims, ensemble_size, e, act_code, acts, dy, grad_flat, want_grads,
                       dx_from)
    if dx_from < dims[0]:
        dx_out[...] = dx


def _bias_grad(d, gb_out):
    """Twin of the kernel: ``gb_out`` = column sums of d (R, D)."""
    gb_out[...] = d.sum(axis=0)
