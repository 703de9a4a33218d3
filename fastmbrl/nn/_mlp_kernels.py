"""Numba kernels of a multilayer perceptron in the flat parameter layout, and the tanh-squashed
Gaussian policy head on its output: what SAC's update, the model-based actor gradients and the
policy rollouts through a model all run.

Design
------
- Networks live in the flat layout of ``fastmbrl.nn._flat`` (``W_l (E, D_l, D_l+1), b_l (E,
  D_l+1)`` layer after layer); a function takes the flat vector, the widths ``dims`` and the
  member ``e``.
- Matrix products are ``np.dot`` on contiguous 2-D views, which Numba hands to scipy's BLAS (``?gemm``,
  transposes passed as flags, no copies); the element-wise parts (bias + activation, their
  derivatives, the policy head) are plain loops that LLVM vectorizes for the host CPU.
- ``_mlp_forward``/``_mlp_backward`` allocate their outputs (one-off passes); ``_forward_into`` and
  ``_backward_into`` write into caller-made buffers (``_act_view``), for the training loops.
- Activation codes: 0 identity, 1 ReLU, 2 tanh (``fastmbrl._config.ACTIVATIONS``); the output
  layer is linear. Every function has a NumPy twin of the same name and signature in
  ``_mlp_reference.py``.
"""
import numpy as np
from numba import njit

_LOG2 = 0.6931471805599453
_HALF_LOG_2PI = 0.9189385332046727


@njit(cache=True)
def _layer(flat, dims, ensemble_size, e, l):
    """Views (W (D_l, D_l+1), b (D_l+1,)) of member e, layer l, in the flat layout."""
    off = 0
    for k in range(l):
        off += ensemble_size * (dims[k] * dims[k + 1] + dims[k + 1])
    din = dims[l]
    dout = dims[l + 1]
    W = flat[off + e * din * dout: off + (e + 1) * din * dout].reshape((din, dout))
    boff = off + ensemble_size * din * dout
    b = flat[boff + e * dout: boff + (e + 1) * dout]
    return W, b


@njit(cache=True)
def _bias_act(z, b, act_code):
    """z <- act(z + b) in place; act_code 0 = identity, 1 = ReLU, 2 = tanh. One loop per case: a
    branch inside the loop kept the ReLU case scalar (4x slower, measured)."""
    R, D = z.shape
    if act_code == 1:
        for r in range(R):
            for j in range(D):
                z[r, j] = max(z[r, j] + b[j], 0.0)
    elif act_code == 2:
        for r in range(R):
            for j in range(D):
                z[r, j] = np.tanh(z[r, j] + b[j])
    else:
        for r in range(R):
            for j in range(D):
                z[r, j] += b[j]


@njit(cache=True)
def _bias_grad(d, gb_out):
    """gb_out = column sums of d (R, D): the bias gradient of a layer whose output gradient is d."""
    R, D = d.shape
    for j in range(D):
        gb_out[j] = 0.0
    for r in range(R):
        for j in range(D):
            gb_out[j] += d[r, j]


@njit(cache=True)
def _act_backward(dh, h, act_code):
    """dh <- dh * act'(.) in place, from the post-activation h: ReLU (1) zeroes where h <= 0,
    tanh (2) multiplies by 1 - h^2."""
    R, D = dh.shape
    for r in range(R):
        for j in range(D):
            if act_code == 1:
                if h[r, j] <= 0.0:
                    dh[r, j] = 0.0
            else:
                dh[r, j] *= 1.0 - h[r, j] * h[r, j]


@njit(cache=True)
def _mlp_forward(flat, dims, ensemble_size, e, act_code, x):
    """Forward pass of member e on x (R, D_0): list [x, h_1, ..., h_{L-1}, y] of post-activations.

    act_code 1 = ReLU, 2 = tanh on hidden layers; the output layer is linear.
    """
    L = dims.size - 1
    acts = [x]
    h = x
    for l in range(L):
        W, b = _layer(flat, dims, ensemble_size, e, l)
        z = np.dot(h, W)
        _bias_act(z, b, act_code if l < L - 1 else 0)
        acts.append(z)
        h = z
    return acts


@njit(cache=True)
def _mlp_backward(flat, dims, ensemble_size, e, act_code, acts, dy, grad_flat, want_grads, dx_from):
    """Backward pass of member e through the activations ``acts`` of ``_mlp_forward``.

    dy (R, D_L) is the gradient at the output. With want_grads the parameter gradients of member e
    are written into grad_flat (same layout as flat). Returns dL/dx[:, dx_from:] (R, D_0 - dx_from),
    or an empty (R, 0) array when dx_from == D_0 (the first layer's input gradient is then skipped).
    """
    L = dims.size - 1
    d = dy
    R = dy.shape[0]
    dx = np.empty((R, 0), dtype=dy.dtype)
    for l in range(L - 1, -1, -1):
        W, _b = _layer(flat, dims, ensemble_size, e, l)
        if want_grads:
            gW, gb = _layer(grad_flat, dims, ensemble_size, e, l)
            np.dot(acts[l].T, d, gW)
            _bias_grad(d, gb)
        if l > 0:
            dh = np.dot(d, W.T)
            _act_backward(dh, acts[l], act_code)
            d = dh
        elif dx_from < dims[0]:
            dx = np.dot(d, W[dx_from:].T)
    return dx


@njit(cache=True)
def _act_size(dims, R):
    """Elements of one R-row pass's post-activations (layers 1..L) in the buffer of ``_act_view``."""
    n = 0
    for k in range(1, dims.size):
        n += R * dims[k]
    return n


@njit(cache=True)
def _act_view(abuf, dims, R, l):
    """(R, D_l) post-activation of layer l (1..L) of an R-row pass stored in the 1-D buffer abuf."""
    off = 0
    for k in range(1, l):
        off += R * dims[k]
    return abuf[off: off + R * dims[l]].reshape((R, dims[l]))


@njit(cache=True)
def _forward_into(flat, dims, ensemble_size, e, act_code, x, abuf):
    """``_mlp_forward`` of member e on x (R, D_0) writing every post-activation into abuf (see
    ``_act_view``; nothing allocated). Returns the (R, D_L) output view."""
    L = dims.size - 1
    R = x.shape[0]
    h = x
    for l in range(L):
        W, b = _layer(flat, dims, ensemble_size, e, l)
        z = _act_view(abuf, dims, R, l + 1)
        np.dot(h, W, z)
        _bias_act(z, b, act_code if l < L - 1 else 0)
        h = z
    return h


@njit(cache=True)
def _backward_into(flat, dims, ensemble_size, e, act_code, x, abuf, r0, r1, dy, grad_flat,
                   want_grads, dx_from, dx_out, dbuf):
    """``_mlp_backward`` of member e for rows r0:r1 of the pass (x, abuf) of ``_forward_into``.

    dy (r1 - r0, D_L); with want_grads member e's parameter gradients over these rows are written
    into grad_flat; when dx_from < D_0, dL/dx[r0:r1, dx_from:] goes to dx_out. dbuf is scratch of
    at least 2 (r1 - r0) max(D_1 .. D_L-1) elements. Rows are independent in everything but the
    parameter gradients, so any row split gives the same input gradient.
    """
    L = dims.size - 1
    R = x.shape[0]
    n = r1 - r0
    half = dbuf.size // 2
    d = dy
    for l in range(L - 1, -1, -1):
        W, _b = _layer(flat, dims, ensemble_size, e, l)
        if l > 0:
            inp = _act_view(abuf, dims, R, l)[r0:r1]
        else:
            inp = x[r0:r1]
        if want_grads:
            gW, gb = _layer(grad_flat, dims, ensemble_size, e, l)
            np.dot(inp.T, d, gW)
            _bias_grad(d, gb)
        if l > 0:
            slot = (l % 2) * half                 # ping-pong: never the slot d lives in
            dh = dbuf[slot: slot + n * dims[l]].reshape((n, dims[l]))
            np.dot(d, W.T, dh)
            _act_backward(dh, inp, act_code)
            d = dh
        elif dx_from < dims[0]:
            np.dot(d, W[dx_from:].T, dx_out)


@njit(cache=True)
def _squash_head(out, eps, log_std_min, log_std_max, scale, bias, a_out, logp_out):
    """Tanh-squashed Gaussian from the actor's output rows.

    out (R, 2A) = [mean, raw log-std]; eps (R, A) standard normal; a_out (R, A) = scale tanh(u) + bias
    with u = mean + exp(clip(raw)) eps; logp_out (R,) = log N(u) - sum 2 (log 2 - u - softplus(-2u)).
    """
    R, A = eps.shape
    for r in range(R):
        s = 0.0
        for j in range(A):
            ls = min(max(out[r, A + j], log_std_min), log_std_max)
            e = eps[r, j]
            u = out[r, j] + np.exp(ls) * e
            a_out[r, j] = scale[j] * np.tanh(u) + bias[j]
            m2u = -2.0 * u
            sp = max(m2u, 0.0) + np.log1p(np.exp(-abs(m2u)))
            s += -0.5 * e * e - ls - _HALF_LOG_2PI - 2.0 * (_LOG2 - u - sp)
        logp_out[r] = s


@njit(cache=True)
def _squash_head_vjp(out, eps, d_act, d_logp, log_std_min, log_std_max, scale, dout):
    """Gradient dout (R, 2A) at the actor's output rows of sum_r (d_act[r] . a_r + d_logp[r] log pi_r)
    for the ``_squash_head`` sample (eps fixed); the clipped raw log-std passes no gradient outside
    its bounds (as ``torch.clamp``)."""
    R, A = eps.shape
    for r in range(R):
        w = d_logp[r]
        for j in range(A):
            raw = out[r, A + j]
            ls = min(max(raw, log_std_min), log_std_max)
            std = np.exp(ls)
            e = eps[r, j]
            t = np.tanh(out[r, j] + std * e)
            # d/du through a = scale tanh u + bias, plus the squash term of log pi
            du = d_act[r, j] * scale[j] * (1.0 - t * t) + w * 2.0 * t
            dout[r, j] = du
            inside = raw >= log_std_min and raw <= log_std_max
            dout[r, A + j] = (du * std * e - w) if inside else 0.0
